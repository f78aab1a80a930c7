// run(): exec that collects the output, for the common "run this and give me what it
// printed" case.
import { cutText, MAX_STDERR_EXCERPT } from "@guestkit/protocol";
import { Code, GuestError } from "../guest-error.js";
import type { ExecHandle, ExitStatus } from "./exec-handle.js";
import type { ExecOptions } from "./exec-request.js";

/** Options of run(). */
export interface RunOptions extends Omit<ExecOptions, "stdin" | "unconsumedOutputLimit"> {
  /** Written to the command's stdin, then EOF. Without it, stdin is EOF at once. */
  input?: string | Uint8Array;
  /**
   * Output kept, stdout and stderr together. Past it, further output is read and
   * dropped (the command runs on to its end, never blocked) and `outputCapped` is set.
   * Default 16 MiB.
   */
  maxOutputBytes?: number;
  /** Reject with a CommandFailedError when the command does not exit 0. */
  check?: boolean;
}

/** What run() resolves with. */
export interface RunResult {
  /** stdout decoded as UTF-8 (invalid sequences become U+FFFD). */
  readonly stdout: string;
  readonly stderr: string;
  /** The same, as bytes. */
  readonly stdoutBytes: Uint8Array;
  readonly stderrBytes: Uint8Array;
  readonly exit: ExitStatus;
  /** Output past maxOutputBytes was dropped. */
  readonly outputCapped: boolean;
}

/** run(..., { check: true }) when the command did not exit 0. */
export class CommandFailedError extends GuestError {
  override readonly name: string = "CommandFailedError";
  /** Everything run() would have resolved with. */
  readonly result: RunResult;

  constructor(result: RunResult, context: string) {
    super(Code.UNKNOWN, describeFailure(result), { reason: "command-failed", context });
    this.result = result;
  }
}

/** Default of RunOptions.maxOutputBytes. */
export const DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

/** Collects a started command's output and exit (see run()). */
export async function collectRun(handle: ExecHandle, options: RunOptions, context: string): Promise<RunResult> {
  const max = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  if (!(Number.isInteger(max) && max >= 0)) {
    throw new GuestError(Code.INVALID_ARGUMENT, "maxOutputBytes must be a non-negative whole number", { context });
  }
  if (handle.stdin) {
    handle.stdin.end(typeof options.input === "string" ? Buffer.from(options.input) : options.input);
  }
  const chunks: Record<"stdout" | "stderr", Uint8Array[]> = { stdout: [], stderr: [] };
  let kept = 0;
  let capped = false;
  for await (const { stream, data } of handle) {
    const room = max - kept;
    if (room <= 0) {
      capped = true;
      continue;
    }
    const piece = data.byteLength > room ? data.subarray(0, room) : data;
    if (piece !== data) capped = true;
    chunks[stream].push(piece);
    kept += piece.byteLength;
  }
  const exit = await handle.exit;
  const stdoutBytes = Buffer.concat(chunks.stdout);
  const stderrBytes = Buffer.concat(chunks.stderr);
  const result: RunResult = {
    stdout: stdoutBytes.toString("utf8"),
    stderr: stderrBytes.toString("utf8"),
    stdoutBytes,
    stderrBytes,
    exit,
    outputCapped: capped,
  };
  if (options.check && (exit.code !== 0 || exit.signal !== null)) throw new CommandFailedError(result, context);
  return result;
}

function describeFailure(result: RunResult): string {
  const exit = result.exit;
  const how = exit.startFailed
    ? `could not start (${exit.code}): ${exit.startError}`
    : exit.unknown
      ? "exit status unknown (the agent reported -1: a timeout or a signal death)"
      : exit.timedOut
        ? `timed out (${exit.code})`
        : exit.signal
          ? `killed by ${exit.signal} (${exit.code})`
          : `exited with code ${exit.code}`;
  const stderr = result.stderr.trim();
  if (!stderr) return how;
  return `${how}: ${stderr.length > MAX_STDERR_EXCERPT ? "..." : ""}${cutText(stderr, MAX_STDERR_EXCERPT, "end")}`;
}
