// The local terminal during `exec -t`: raw mode, its size, and its resizes. Raw mode
// is undone on every way out: the normal end, an error (the caller's finally), and a
// process exit nobody planned for (the 'exit' hook below, which also runs after an
// uncaught exception). Signals that would end guestctl are handled by the caller and
// end through the same path.
import { spawnSync } from "node:child_process";
import type { ReadStream, WriteStream } from "node:tty";

/** A terminal size. */
export interface TerminalSize {
  rows: number;
  cols: number;
}

/** The local terminal, as `exec -t` uses it. */
export interface LocalTerminal {
  /** Whether our stdin is a terminal (raw mode and key reading are possible). */
  readonly interactive: boolean;
  /** The size of the terminal we write to, if any of stdout or stderr is one. */
  size(): TerminalSize | undefined;
  /** Puts stdin's terminal in raw mode: every key goes to the remote terminal. */
  enterRaw(): void;
  /** Leaves raw mode (idempotent). */
  restore(): void;
  /** Calls `listener` with the new size on every SIGWINCH; returns the unsubscribe function. */
  onResize(listener: (size: TerminalSize) => void): () => void;
}

/** The local terminal of this process. */
export function openLocalTerminal(): LocalTerminal {
  const stdin = process.stdin as ReadStream;
  const interactive = stdin.isTTY === true;
  const output = ([process.stdout, process.stderr] as WriteStream[]).find((stream) => stream.isTTY === true);
  let raw = false;
  const restore = () => {
    if (!raw) return;
    raw = false;
    try {
      stdin.setRawMode(false);
    } catch {
      // The terminal is gone (hung up): there is nothing left to restore.
    }
  };
  const size = (): TerminalSize | undefined => {
    if (!output) return undefined;
    const [cols, rows] = output.getWindowSize();
    return rows > 0 && cols > 0 ? { rows, cols } : undefined;
  };
  return {
    interactive,
    size,
    enterRaw() {
      if (!interactive || raw) return;
      stdin.setRawMode(true);
      raw = true;
      process.once("exit", restore);
      // libuv's raw mode keeps output processing (ONLCR), so the remote terminal's
      // "\r\n" would show up as "\r\r\n": turn it off as cfmakeraw() (and ssh) do.
      // Leaving raw mode restores the settings libuv saved, OPOST included.
      spawnSync("stty", ["-opost"], { stdio: ["inherit", "ignore", "ignore"] });
    },
    restore,
    onResize(listener) {
      const onSignal = () => {
        const current = size();
        if (current) listener(current);
      };
      process.on("SIGWINCH", onSignal);
      return () => process.off("SIGWINCH", onSignal);
    },
  };
}
