// A command's terminal (TTY Exec): node-pty makes the pseudo-terminal and sets its size;
// the launcher (process-launch.ts) starts the command on its slave side, as the
// command's controlling terminal, so resize delivers SIGWINCH, ^C delivers SIGINT and
// /dev/tty works.
import { closeSync, constants, openSync } from "node:fs";
import { ReadStream } from "node:tty";
import type { ProcessExit, ProcessHandle, ProcessTree } from "./process-handle.js";
import { ptyNative } from "./process-pty-native.js";

// The terminal's VEOF character (^D).
const EOF_CHAR = 0x04;

/** A terminal made for one command, before and after it starts. */
export interface CommandTerminal {
  /** The slave side, blocking and close-on-exec: what the command gets as 0, 1 and 2. */
  readonly slave: number;
  /** The ProcessHandle of the command started on it; the terminal is its from then on. */
  handle(pid: number, exited: Promise<ProcessExit>, tree: ProcessTree): ProcessHandle;
  /** Closes both sides: for a command that did not start. */
  close(): void;
}

/** Opens a terminal of rows x cols. Throws an Error saying what failed (node-pty missing, no pty left). */
export function openTerminal(rows: number, cols: number): CommandTerminal {
  const native = ptyNative();
  const pty = native.open(cols, rows);
  // node-pty's own slave is non-blocking and not close-on-exec: the command would get a
  // terminal that reads EAGAIN, and any other child of the agent would inherit it. The
  // path opened again gives one that is neither (Node opens everything close-on-exec).
  let slave: number;
  try {
    slave = openSync(pty.pty, constants.O_RDWR | constants.O_NOCTTY);
  } catch (error) {
    closeSync(pty.master);
    throw error;
  } finally {
    closeSync(pty.slave);
  }
  const master = pty.master;
  return {
    slave,
    handle: (pid, exited, tree) => terminalHandle(master, slave, pid, exited, tree),
    close() {
      closeSync(master);
      closeSync(slave);
    },
  };
}

function terminalHandle(
  master: number,
  slave: number,
  pid: number,
  reaped: Promise<ProcessExit>,
  tree: ProcessTree,
): ProcessHandle {
  // The agent holds the slave side open itself until the command has been reaped. The
  // master reads EIO (end of output) as soon as the last slave descriptor closes, which
  // happens early in the exiting command's do_exit(); closing the master then hangs up
  // the terminal, and the SIGHUP that sends replaces the exit status the command was
  // about to report.
  const exited = reaped.then((exit) => {
    closeSync(slave);
    return exit;
  });
  // One stream for both directions: libuv writes to the non-blocking master with its
  // own EAGAIN handling, and closes the descriptor only on the loop thread, so no write
  // can land on a reused descriptor number.
  const terminal = new ReadStream(master);
  // EIO once every holder of the slave side has closed it: that is the terminal's EOF.
  terminal.on("error", () => {});
  let lastByte = 0x0a;
  let stdinClosed = false;
  return {
    pid,
    tree,
    outputs: [{ kind: "stdout", stream: terminal }],
    writeStdin(data) {
      if (stdinClosed || !terminal.writable || data.length === 0) return Promise.resolve();
      lastByte = data[data.length - 1] ?? lastByte;
      return new Promise((resolve) => terminal.write(data, () => resolve()));
    },
    closeStdin() {
      if (stdinClosed || !terminal.writable) return Promise.resolve();
      stdinClosed = true;
      // ^D ends input only at the start of a line; in the middle of one it just hands
      // over the partial line, and a second ^D then ends input.
      const atLineStart = lastByte === 0x0a || lastByte === 0x0d;
      const eof = Buffer.from(atLineStart ? [EOF_CHAR] : [EOF_CHAR, EOF_CHAR]);
      return new Promise((resolve) => terminal.write(eof, () => resolve()));
    },
    resize(rows, cols) {
      if (terminal.destroyed) return;
      try {
        ptyNative().resize(master, cols, rows);
      } catch {
        // The terminal is already gone.
      }
    },
    exited,
    close() {
      terminal.destroy();
    },
  };
}
