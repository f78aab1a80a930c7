// guestctl's exit statuses, one table for every command, and the one place that turns
// an error into a line of text and a status:
//
//   0    success
//   1    the operation failed (a copy refused, a path that does not exist, wait timed out)
//   2    bad command line (unknown option, missing argument, bad target, unreadable token file)
//   255  the agent could not be reached, or the connection dropped: the outcome is unknown
//
// exec exits with the command's own status instead of 0 and 1, so every other failure of
// its own is 255 too: a 1 would pass for the command's (ssh does the same).
import { Code, GuestError } from "../guest-error.js";

/** The operation failed (a copy, a stat, a wait that timed out). */
export const EXIT_FAILURE = 1;
/** Bad command line: unknown option, missing argument, bad target string. */
export const EXIT_USAGE = 2;
/** The agent could not be reached, or the connection dropped: the outcome is unknown. */
export const EXIT_UNREACHABLE = 255;

/** The table above, for `guestctl --help`. */
export const EXIT_STATUS_HELP = `Exit status (every command): 0 success, 1 the operation failed, 2 bad usage,
255 agent unreachable or connection lost. exec exits with the command's status
(128+N after signal N, 124 on timeout, 126/127 when it could not start), and with
255 for any failure of guestctl's own after the command line was accepted.
`;

/** A failure guestctl reports as one line and an exit status (never a stack trace). */
export class CliError extends Error {
  override readonly name = "CliError";
  readonly status: number;

  constructor(message: string, status: number = EXIT_FAILURE, options: { cause?: unknown } = {}) {
    super(message, options);
    this.status = status;
  }
}

/** A usage error: the command line itself is wrong. */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT_USAGE);
}

/**
 * The exit status of any error: a CliError's own; an agent that could not be reached
 * (or a connection that dropped) is 255; the rest is 1.
 */
export function statusOf(error: unknown): number {
  if (error instanceof CliError) return error.status;
  if (error instanceof GuestError && error.code === Code.UNAVAILABLE) return EXIT_UNREACHABLE;
  return EXIT_FAILURE;
}

// C0 controls, DEL and C1 controls: text from the guest (error messages, file names)
// must not move the cursor, retitle the window or otherwise drive the terminal.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** Text made safe for one line of a terminal: control characters shown as escapes. */
export function printable(text: string): string {
  return text.replace(CONTROL, (char) => {
    const code = char.charCodeAt(0);
    if (char === "\n") return "\\n";
    if (char === "\t") return "\\t";
    if (char === "\r") return "\\r";
    return `\\x${code.toString(16).padStart(2, "0")}`;
  });
}

/** The one line guestctl prints for an error (without the `guestctl: ` prefix). */
export function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return printable(text);
}
