// Signals sent to guestctl during `exec` are meant for the remote command, as they
// would be for a local one: Ctrl-C (SIGINT), SIGTERM from a supervisor, SIGHUP when
// the terminal goes away, SIGQUIT. Each is sent to the remote process group instead of
// ending guestctl, which goes on until the command's exit arrives and exits with its
// status. A command that ignores them would leave the user stuck, so the third signal
// makes guestctl give up on it: the call is cancelled (the agent then kills the
// command) and guestctl exits as if killed by that signal.
import { constants } from "node:os";

/** Signals forwarded to the remote command. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];

/** How many signals in a row are forwarded before guestctl gives up. */
export const SIGNALS_BEFORE_GIVING_UP = 3;

/** Options of forwardSignals(). */
export interface ForwardSignalsOptions {
  /** Sends a signal to the remote command. */
  kill(signal: NodeJS.Signals): void;
  /** The user insists: stop waiting for the command. Gets the last signal. */
  giveUp(signal: NodeJS.Signals): void;
}

/** A running forwarder. */
export interface SignalForwarder {
  /**
   * Handles a signal that did not come through the process (a Ctrl-C read as a key
   * from a raw terminal) exactly as one that did.
   */
  deliver(signal: NodeJS.Signals): void;
  /** Stops forwarding, restoring the default handling. */
  stop(): void;
}

/** Starts forwarding. */
export function forwardSignals(options: ForwardSignalsOptions): SignalForwarder {
  let received = 0;
  const deliver = (signal: NodeJS.Signals) => {
    received += 1;
    if (received >= SIGNALS_BEFORE_GIVING_UP) options.giveUp(signal);
    else options.kill(signal);
  };
  const handlers = FORWARDED_SIGNALS.map((signal) => {
    const handler = () => deliver(signal);
    process.on(signal, handler);
    return { signal, handler };
  });
  return {
    deliver,
    stop() {
      for (const { signal, handler } of handlers) process.off(signal, handler);
    },
  };
}

/** The status a shell reports for a process killed by `signal`: 128 + its number. */
export function signalExitStatus(signal: NodeJS.Signals): number {
  return 128 + ((constants.signals as Record<string, number>)[signal] ?? 0);
}
