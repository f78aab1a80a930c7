// node-pty's native binding, used directly. Its UnixTerminal wrapper destroys the
// terminal 200 ms after the process exits (output a slow client had not taken yet was
// lost) and queues stdin without bound; the agent needs only the binding's openpty()
// and TIOCSWINSZ (the launcher, process-launch.ts, starts the command). node-pty
// exposes it as `native`, outside its typed API, so the version is pinned exactly and
// the shape is checked here once.
import { createRequire } from "node:module";

/** A new pseudo-terminal: both sides (non-blocking, not close-on-exec) and the slave's path. */
export interface PtyPair {
  readonly master: number;
  readonly slave: number;
  readonly pty: string;
}

/** node-pty 1.1's Unix binding (src/native.d.ts there), the part the agent uses. */
export interface PtyNative {
  /** openpty() at that size. */
  open(cols: number, rows: number): PtyPair;
  resize(fd: number, cols: number, rows: number): void;
}

let loaded: PtyNative | undefined;

/** Loads the binding once; throws an Error saying what is missing. */
export function ptyNative(): PtyNative {
  if (loaded) return loaded;
  let native: Partial<PtyNative> | null | undefined;
  try {
    native = (createRequire(import.meta.url)("node-pty") as { native?: Partial<PtyNative> | null }).native;
  } catch (error) {
    throw new Error(`TTY mode needs node-pty, which failed to load: ${(error as Error).message}`);
  }
  if (typeof native?.open !== "function" || typeof native.resize !== "function") {
    throw new Error("TTY mode needs node-pty's native binding (open, resize), which this node-pty does not expose");
  }
  loaded = native as PtyNative;
  return loaded;
}
