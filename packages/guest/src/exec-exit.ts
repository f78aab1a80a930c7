// The exit status a shell would report for how a command ended.
import type { ExecExit } from "@guestkit/protocol";
import type { ProcessExit } from "./process-handle.js";
import { signalNameOf } from "./signal-names.js";

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
