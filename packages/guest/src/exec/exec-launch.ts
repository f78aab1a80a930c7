// From a validated ExecStart to a running process: who it runs as, its environment,
// the preflight checks, its cgroup, then pipes or a terminal.

import { describeError } from "@guestkit/protocol";
import type { ExecSpec } from "./exec-request.js";
import type { CommandCgroup, CommandCgroups } from "./process-cgroup.js";
import type { LaunchResult } from "./process-handle.js";
import { launchProcess } from "./process-launch.js";
import { agentIdentity, DEFAULT_PATH, preflight } from "./process-preflight.js";
import { type RunAs, resolveUser, UnknownUserError } from "./user-database.js";

/** TERM in TTY mode unless the request's env names one: what hosts' terminals emulate. */
export const DEFAULT_TERM = "xterm-256color";

/**
 * Starts the command, in a cgroup of its own when `cgroups` is given, or says in one
 * line why it cannot run (126/127).
 */
export async function launchCommand(spec: ExecSpec, cgroups: CommandCgroups | undefined): Promise<LaunchResult> {
  let runAs: RunAs | undefined;
  if (spec.user !== "") {
    try {
      runAs = await resolveUser(spec.user);
    } catch (error) {
      const reason =
        error instanceof UnknownUserError ? error.message : `cannot read the user database: ${describeError(error)}`;
      return { ok: false, code: 126, reason };
    }
  }
  const agent = agentIdentity();
  if (runAs && agent.uid !== 0 && (runAs.uid !== agent.uid || runAs.gid !== agent.gid)) {
    return { ok: false, code: 126, reason: `cannot run as "${spec.user}": the agent is not running as root` };
  }
  const env = commandEnvironment(spec, runAs);
  const cwd = spec.cwd || process.cwd();
  const who = runAs ? { uid: runAs.uid, gid: runAs.gid, groups: [runAs.gid] } : agent;
  const [command = ""] = spec.argv;
  const found = preflight(command, cwd, env.PATH, who);
  if (!found.ok) return found;
  let cgroup: CommandCgroup | undefined;
  try {
    cgroup = cgroups?.create();
  } catch (error) {
    return { ok: false, code: 126, reason: `${command}: cannot make its cgroup: ${describeError(error)}` };
  }
  const options = {
    file: found.file,
    argv: spec.argv,
    env,
    cwd,
    ...(spec.tty ? { terminal: { rows: spec.rows, cols: spec.cols } } : {}),
    // An agent that is not root runs commands only as itself (see above): nothing to switch.
    ...(runAs && agent.uid === 0 ? { runAs: { uid: runAs.uid, gid: runAs.gid } } : {}),
    ...(cgroup ? { cgroup } : {}),
  };
  const launched = await launchProcess(options);
  if (!launched.ok) cgroup?.release();
  return launched;
}

/**
 * The agent's environment, then the login variables of the user it runs as, then the
 * request's own entries on top. An agent started as init may have no PATH at all; the
 * command then gets the one execvp() would search, so lookup and environment agree.
 */
export function commandEnvironment(spec: ExecSpec, runAs: RunAs | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined) env[name] = value;
  }
  Object.assign(env, runAs?.env);
  if (runAs && !("USER" in runAs.env)) {
    // A uid with no passwd entry: the agent's own names would be a lie.
    delete env.USER;
    delete env.LOGNAME;
  }
  if (spec.tty) env.TERM = DEFAULT_TERM;
  Object.assign(env, spec.env);
  env.PATH ??= DEFAULT_PATH;
  return env;
}
