// The exit status a shell would report for how a command ended, or why it never started.
// Imported by the trampoline (exec-trampoline.ts) too, so it stays free of gRPC.
import type { ExecExit } from "@guestkit/protocol";
import type { ProcessExit } from "./process-handle.js";
import { signalNameOf } from "./signal-names.js";

/**
 * The one errno-to-exit mapping for a start that failed at `step` (the system call), as
 * a shell reports it: 127 for a file execve() did not find, 126 ("cannot run") for
 * anything else (a cwd or a cgroup that is gone is ENOENT too, but the command is there).
 */
export function startExitCode(errno: string, step = "execve"): 126 | 127 {
  return errno === "ENOENT" && step === "execve" ? 127 : 126;
}

/** Exit code of a command the timeout ended, as timeout(1) reports it. */
export const TIMEOUT_EXIT_CODE = 124;

/** What ended a command, as the service saw it. */
export interface CommandOutcome {
  readonly exit: ProcessExit;
  readonly timedOut: boolean;
  readonly outputTruncated: boolean;
}

/** ExecExit's fields: 124 on timeout, 128+N on death by signal N, else the exit status. */
export function execExitOf(outcome: CommandOutcome): Omit<ExecExit, "$typeName"> {
  const { exit } = outcome;
  const signal = exit.signal ? signalNameOf(exit.signal) : "";
  const own = exit.signal ? 128 + exit.signal : (exit.code ?? 0);
  return {
    code: outcome.timedOut ? TIMEOUT_EXIT_CODE : own,
    signal,
    timedOut: outcome.timedOut,
    outputTruncated: outcome.outputTruncated,
    startFailed: false,
    startError: "",
  };
}
