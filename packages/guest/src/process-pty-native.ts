// node-pty's native binding, used directly. Its UnixTerminal wrapper destroys the
// terminal 200 ms after the process exits (output a slow client had not taken yet was
// lost) and queues stdin without bound; the binding itself is just forkpty() and
// TIOCSWINSZ, which is all the agent needs. node-pty exposes it as `native`, outside
// its typed API, so the version is pinned exactly and the shape is checked here once.
import { createRequire } from "node:module";

/** The forked child: the terminal master (not close-on-exec), its pid and the slave's path. */
export interface PtyChild {
  readonly fd: number;
  readonly pid: number;
  readonly pty: string;
}

/** node-pty 1.1's Unix binding (src/native.d.ts there). */
export interface PtyNative {
  /**
   * forkpty(), then in the child: chdir(cwd), setgid/setuid when both are not -1,
   * execvp(file) with argv[0] = file. `onExit` runs once the child was reaped.
   */
  fork(
    file: string,
    args: string[],
    env: string[],
    cwd: string,
    cols: number,
    rows: number,
    uid: number,
    gid: number,
    useUtf8: boolean,
    helperPath: string,
    onExit: (code: number, signal: number) => void,
  ): PtyChild;
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
  if (typeof native?.fork !== "function" || typeof native.resize !== "function") {
    throw new Error("TTY mode needs node-pty's native binding (fork, resize), which this node-pty does not expose");
  }
  loaded = native as PtyNative;
  return loaded;
}
