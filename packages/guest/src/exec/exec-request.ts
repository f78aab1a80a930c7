// Validation of what an Exec client sends. Anything malformed is an ExecRequestError,
// which the service turns into INVALID_ARGUMENT before (or instead of) running anything.
import type { ExecStart } from "@guestkit/protocol";

/** A request the agent refuses; the message is the status details. */
export class ExecRequestError extends Error {
  override readonly name = "ExecRequestError";
}

/** A validated ExecStart. */
export interface ExecSpec {
  readonly argv: readonly string[];
  readonly tty: boolean;
  /** The request's own entries (added on top of the agent's environment). */
  readonly env: Readonly<Record<string, string>>;
  /** Absolute, or "" for the agent's working directory. */
  readonly cwd: string;
  /** 0 = none. */
  readonly timeoutMs: number;
  readonly rows: number;
  readonly cols: number;
  /** "" = the agent's user. */
  readonly user: string;
}

/** Terminal size when the client gives 0 (the size every terminal starts at). */
export const DEFAULT_ROWS = 24;
export const DEFAULT_COLS = 80;

// struct winsize holds unsigned shorts.
const MAX_WINDOW_DIMENSION = 0xffff;
// setTimeout holds at most 2^31-1 ms; a longer timeout is no timeout in practice.
const MAX_TIMEOUT_SECONDS = Math.floor(0x7fffffff / 1000);

/** Checks an ExecStart; throws ExecRequestError naming the first problem. */
export function parseExecStart(start: ExecStart): ExecSpec {
  const argv = start.command;
  if (argv.length === 0 || argv[0] === "") throw new ExecRequestError("start.command is empty");
  argv.forEach((arg, i) => {
    rejectNul(arg, `start.command[${i}]`);
  });
  for (const [name, value] of Object.entries(start.env)) {
    if (name === "" || name.includes("=")) throw new ExecRequestError(`start.env has a bad name "${name}"`);
    rejectNul(name, "a start.env name");
    rejectNul(value, `start.env["${name}"]`);
  }
  rejectNul(start.cwd, "start.cwd");
  if (start.cwd !== "" && !start.cwd.startsWith("/")) {
    throw new ExecRequestError(`start.cwd must be an absolute path, not "${start.cwd}"`);
  }
  rejectNul(start.user, "start.user");
  if (start.timeoutSeconds < 0)
    throw new ExecRequestError(`start.timeout_seconds is negative (${start.timeoutSeconds})`);
  const { rows, cols } = parseWindowSize(start.rows, start.cols, "start");
  return {
    argv,
    tty: start.tty,
    env: start.env,
    cwd: start.cwd,
    timeoutMs: Math.min(start.timeoutSeconds, MAX_TIMEOUT_SECONDS) * 1000,
    rows,
    cols,
    user: start.user,
  };
}

/** A terminal size from the wire: 0 means the default, above 65535 is an error. */
export function parseWindowSize(rows: number, cols: number, what: string): { rows: number; cols: number } {
  if (rows > MAX_WINDOW_DIMENSION || cols > MAX_WINDOW_DIMENSION) {
    throw new ExecRequestError(`${what}: terminal size ${rows}x${cols} is out of range (at most 65535)`);
  }
  return { rows: rows || DEFAULT_ROWS, cols: cols || DEFAULT_COLS };
}

function rejectNul(text: string, what: string): void {
  if (text.includes("\0")) throw new ExecRequestError(`${what} contains a NUL byte`);
}
