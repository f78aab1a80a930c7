// Shared by the agent and exec-trampoline.ts, which must not import each other.
import { fileURLToPath } from "node:url";

/** Prefix that hides the command's environment from the trampoline's own Node. */
export const ENV_PREFIX = "GUESTKIT_EXEC_ENV:";

/** The compiled trampoline script, next to this module. */
export const TRAMPOLINE_PATH = fileURLToPath(new URL("./exec-trampoline.js", import.meta.url));
