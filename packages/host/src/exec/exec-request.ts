// Exec options: what a caller may ask for, checked before anything is sent, and turned
// into the ExecStart message.

import { constants } from "node:os";
import { create } from "@bufbuild/protobuf";
import { type ExecStart, ExecStartSchema } from "@guestkit/protocol";
import { Code, GuestError } from "../guest-error.js";

/** Options of exec() (and of run()). */
export interface ExecOptions {
  /** Added to the agent's environment. */
  env?: Readonly<Record<string, string>>;
  /** Working directory in the guest. Default: the agent's. */
  cwd?: string;
  /** Run as this user: a name from the guest's /etc/passwd, a uid, or "uid:gid". Default: the agent's user. */
  user?: string | number;
  /** Run in a pseudo-terminal (stderr is then merged into stdout by the terminal). */
  tty?: boolean;
  /** Terminal size with `tty`. Default 24 x 80. */
  rows?: number;
  cols?: number;
  /**
   * Whole seconds after which the agent kills the command's process group (TERM, then
   * KILL); the exit then has `timedOut` and code 124. The wire carries seconds only.
   */
  timeoutSeconds?: number;
  /** Aborting cancels the call: the agent kills the command; `exit` rejects with CANCELLED. */
  signal?: AbortSignal;
  /**
   * Give the handle a `stdin` stream. Without it the command sees EOF on stdin at once
   * (the library sends `stdin_close`, keeping the stream open for kill() and resize()).
   */
  stdin?: boolean;
  /** How long to retry reaching an agent that is still coming up. Default: the client's. */
  connectTimeoutMs?: number;
  /**
   * Output bytes kept while nobody iterates the handle; past it, output is dropped (and
   * counted in `droppedBytes`) so the exit still arrives. Default 1 MiB.
   */
  unconsumedOutputLimit?: number;
}

const MAX_INT32 = 0x7fffffff;

/** Checks argv and options and builds the start message; throws INVALID_ARGUMENT. */
export function buildExecStart(argv: readonly string[], options: ExecOptions, context: string): ExecStart {
  const bad = (text: string) => new GuestError(Code.INVALID_ARGUMENT, text, { context });
  if (!Array.isArray(argv) || argv.length === 0) throw bad("exec needs a command: argv is empty");
  for (const arg of argv) {
    if (typeof arg !== "string") throw bad("every argv element must be a string");
    if (arg.includes("\0")) throw bad("argv elements cannot contain NUL bytes");
  }
  if (argv[0] === "") throw bad("the command name (argv[0]) is empty");
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (name === "" || name.includes("=") || name.includes("\0"))
      throw bad(`bad environment variable name ${JSON.stringify(name)}`);
    if (typeof value !== "string") throw bad(`environment variable ${name}: the value must be a string`);
    if (value.includes("\0")) throw bad(`environment variable ${name}: the value cannot contain NUL bytes`);
    env[name] = value;
  }
  if (options.cwd !== undefined && (options.cwd === "" || options.cwd.includes("\0"))) throw bad("bad cwd");
  const user = options.user === undefined ? "" : String(options.user);
  if (typeof options.user === "number" && !(Number.isInteger(options.user) && options.user >= 0)) {
    throw bad("a numeric user must be a uid (a non-negative integer)");
  }
  if (user.includes("\0")) throw bad("bad user");
  const timeout = options.timeoutSeconds ?? 0;
  if (!Number.isInteger(timeout) || timeout < 0 || timeout > MAX_INT32) {
    throw bad("timeoutSeconds must be a whole number of seconds (0 = none)");
  }
  checkSize(options.rows, "rows", bad);
  checkSize(options.cols, "cols", bad);
  return create(ExecStartSchema, {
    command: [...argv],
    tty: options.tty === true,
    env,
    cwd: options.cwd ?? "",
    timeoutSeconds: timeout,
    rows: options.rows ?? 0,
    cols: options.cols ?? 0,
    user,
  });
}

/** Checks a terminal dimension (rows or cols): a whole number from 1 to 65535. */
export function checkSize(value: number | undefined, name: string, bad: (text: string) => Error): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < 1 || value > 0xffff)
    throw bad(`${name} must be a whole number from 1 to 65535`);
}

/**
 * The signal name to send: "TERM", "SIGTERM" and "term" all give "SIGTERM"; a number is
 * looked up in Linux's table (both sides are Linux). Throws INVALID_ARGUMENT on an
 * unknown signal, so a typo fails here rather than in the guest.
 */
export function signalName(signal: string | number, context: string): string {
  const known = constants.signals as Record<string, number>;
  if (typeof signal === "number") {
    const name = Object.keys(known).find((key) => known[key] === signal);
    if (name) return name;
  } else {
    const upper = signal.toUpperCase();
    const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
    if (name in known) return name;
  }
  throw new GuestError(Code.INVALID_ARGUMENT, `unknown signal ${JSON.stringify(signal)}`, { context });
}
