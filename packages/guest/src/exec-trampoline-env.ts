// Shared by the agent and exec-trampoline.ts, which must not import each other.
import { fileURLToPath } from "node:url";
import type { LaunchOptions } from "./exec/process-handle.js";

/** Prefix that hides the command's environment from the trampoline's own Node. */
export const ENV_PREFIX = "GUESTKIT_EXEC_ENV:";

/** The compiled trampoline script, next to this module. */
export const TRAMPOLINE_PATH = fileURLToPath(new URL("./exec-trampoline.js", import.meta.url));

/** Node's arguments and environment that start the command through the trampoline. */
export function trampolineInvocation(target: LaunchOptions): { args: string[]; env: Record<string, string> } {
  const [argv0 = target.file, ...args] = target.argv;
  const ids = target.runAs ? [String(target.runAs.uid), String(target.runAs.gid)] : ["-", "-"];
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(target.env)) env[`${ENV_PREFIX}${name}`] = value;
  const cgroup = target.cgroup?.path ?? "-";
  return { args: ["--no-warnings", TRAMPOLINE_PATH, ...ids, cgroup, target.file, argv0, ...args], env };
}
