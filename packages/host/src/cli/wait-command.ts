// `guestctl wait`: blocks until the agent answers the gRPC health check, for scripts
// that boot a VM and then use it. Exit 0 when it answers, 1 (with the last reason it
// could not be reached) when the time is up.
import { createGuestClient } from "../guest-client.js";
import { type ConnectionFlags, clientOptions, parseSeconds } from "./connection-flags.js";
import { CliError, EXIT_FAILURE, messageOf } from "./exit-status.js";

/** The options of `wait` as commander parses them. */
export interface WaitFlags extends ConnectionFlags {
  timeout?: string;
}

/** How long `wait` waits without --timeout. */
export const DEFAULT_WAIT_SECONDS = 30;

/** Waits for the agent; resolves with the exit status. */
export async function waitCommand(flags: WaitFlags): Promise<number> {
  const seconds = flags.timeout === undefined ? DEFAULT_WAIT_SECONDS : parseSeconds(flags.timeout, "--timeout");
  const client = createGuestClient(clientOptions(flags));
  try {
    await client.waitUntilReady({ timeoutMs: Math.round(seconds * 1000) });
    return 0;
  } catch (error) {
    throw new CliError(messageOf(error), EXIT_FAILURE, { cause: error });
  } finally {
    await client.close();
  }
}
