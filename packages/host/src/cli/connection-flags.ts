// The options every command shares: where the agent is and how to reach it. They may
// be given before the command (`guestctl --target T stat /`) or after it
// (`guestctl stat --target T /`); --target falls back to GUESTCTL_TARGET.
import { readTokenFile, TokenFileError } from "@guestkit/protocol";
import type { Command } from "commander";
import type { GuestClientOptions } from "../guest-client.js";
import { GuestError } from "../guest-error.js";
import { type GuestTarget, parseTarget, TARGET_FORMS } from "../transport/target.js";
import { printable, usageError } from "./exit-status.js";

/** The shared options as commander parses them. */
export interface ConnectionFlags {
  target?: string;
  tokenFile?: string;
  connectTimeout?: string;
}

/** Environment variable that holds the target when --target is not given. */
export const TARGET_ENV = "GUESTCTL_TARGET";
/** Environment variable that names a token file when --token-file is not given. */
export const TOKEN_FILE_ENV = "GUESTCTL_TOKEN_FILE";

/** Adds the shared options to a command (the program and every subcommand). */
export function addConnectionOptions(command: Command): Command {
  return command
    .option("--target <target>", `the agent: ${TARGET_FORMS}; default $${TARGET_ENV}`)
    .option("--token-file <path>", `file holding the agent's bearer token; default $${TOKEN_FILE_ENV}`)
    .option(
      "--connect-timeout <seconds>",
      "keep retrying to reach an agent that is still coming up for this long (default: one attempt)",
    );
}

/** The target, from the flags or the environment; a usage error naming the accepted forms otherwise. */
export function resolveTarget(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): GuestTarget {
  const text = flags.target ?? env[TARGET_ENV];
  if (text === undefined || text === "") {
    throw usageError(`no target: give --target or set ${TARGET_ENV} (${TARGET_FORMS})`);
  }
  try {
    return parseTarget(text);
  } catch (error) {
    if (error instanceof GuestError) throw usageError(error.message);
    throw error;
  }
}

/** Everything createGuestClient needs, from the flags and the environment. */
export function clientOptions(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): GuestClientOptions {
  const target = resolveTarget(flags, env);
  const options: GuestClientOptions = {
    target,
    onWarning: (message) => process.stderr.write(`guestctl: warning: ${printable(message)}\n`),
  };
  const connectTimeout = flags.connectTimeout;
  if (connectTimeout !== undefined) options.connectTimeoutMs = parseSeconds(connectTimeout, "--connect-timeout") * 1000;
  const tokenFile = flags.tokenFile ?? env[TOKEN_FILE_ENV];
  if (tokenFile !== undefined && tokenFile !== "") options.token = readToken(tokenFile);
  return options;
}

function readToken(path: string): string {
  try {
    return readTokenFile(path);
  } catch (error) {
    if (error instanceof TokenFileError) throw usageError(error.message);
    throw error;
  }
}

/**
 * A number of seconds given on the command line: a non-negative number (fractions
 * allowed unless `whole`). Throws a usage error naming the option.
 */
export function parseSeconds(text: string, option: string, whole = false): number {
  const pattern = whole ? /^\d{1,9}$/ : /^(\d{1,9}(\.\d*)?|\.\d+)$/;
  if (!pattern.test(text)) {
    throw usageError(`${option} must be ${whole ? "a whole number of seconds" : "a number of seconds"}, not "${text}"`);
  }
  return Number(text);
}
