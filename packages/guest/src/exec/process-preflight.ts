// Checks made before starting a command, so that "not found" (127) and "cannot run"
// (126) are told apart and explained in one line, the same in pipe and TTY mode, and so
// that the launcher gets a path (it does not search PATH). Where the trampoline starts
// commands, an exec that fails there can only print its error on the command's stderr.
import { type Stats, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve, sep } from "node:path";
import type { StartFailure } from "./process-handle.js";

/** The PATH execvp() falls back to when the environment has none. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Whose permissions decide whether the command may run. */
export interface Identity {
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
}

/** The agent's own identity. */
export function agentIdentity(): Identity {
  return {
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    groups: process.getgroups?.() ?? [],
  };
}

/** What preflight found: the executable to start, or why it cannot be. */
export type Preflight = { ok: true; file: string } | ({ ok: false } & StartFailure);

const X_OK = 1;

/**
 * Checks that `cwd` is a directory `who` can enter, and finds `command` the way execvp
 * would (in PATH unless it contains a slash), executable by `who`. Synchronous on
 * purpose: it is a handful of stat calls, and the answer must still hold when the
 * spawn right after it runs.
 */
export function preflight(command: string, cwd: string, path: string | undefined, who: Identity): Preflight {
  const cwdProblem = checkDirectory(cwd, who);
  if (cwdProblem) return { ok: false, code: 126, reason: `cannot enter working directory ${cwd}: ${cwdProblem}` };

  if (command.includes("/")) {
    const file = resolve(cwd, command);
    const stat = statOrUndefined(file);
    if (!stat) return { ok: false, code: 127, reason: `${command}: no such file or directory` };
    const problem = checkExecutable(stat, who);
    return problem ? { ok: false, code: 126, reason: `${command}: ${problem}` } : { ok: true, file };
  }

  let denied: string | undefined;
  for (const dir of (path ?? DEFAULT_PATH).split(delimiter)) {
    // An empty PATH entry means the current directory, as execvp treats it.
    const file = resolve(cwd, dir, command);
    const stat = statOrUndefined(file);
    if (!stat) continue;
    const problem = checkExecutable(stat, who);
    if (!problem) return { ok: true, file };
    denied ??= problem;
  }
  return denied
    ? { ok: false, code: 126, reason: `${command}: ${denied}` }
    : { ok: false, code: 127, reason: `${command}: command not found` };
}

function checkDirectory(dir: string, who: Identity): string | undefined {
  if (!isAbsolute(dir)) return "not an absolute path";
  const stat = statOrUndefined(dir);
  if (!stat) return "no such directory";
  if (!stat.isDirectory()) return "not a directory";
  // Reaching it needs search permission on every directory on the way.
  let prefix: string = sep;
  for (const part of ["", ...dir.split(sep).filter(Boolean)]) {
    prefix = join(prefix, part);
    const step = statOrUndefined(prefix);
    if (step && !mayAccess(step, who, X_OK)) return "permission denied";
  }
  return undefined;
}

function checkExecutable(stat: Stats, who: Identity): string | undefined {
  if (stat.isDirectory()) return "is a directory";
  if (!stat.isFile()) return "not a regular file";
  return mayAccess(stat, who, X_OK) ? undefined : "permission denied (not executable)";
}

// The kernel's rule for the classic permission bits. Root may execute a file only if
// some execute bit is set, and may search any directory.
function mayAccess(stat: Stats, who: Identity, bit: number): boolean {
  if (who.uid === 0) return bit !== X_OK || stat.isDirectory() || (stat.mode & 0o111) !== 0;
  if (stat.uid === who.uid) return (stat.mode & (bit << 6)) !== 0;
  if (stat.gid === who.gid || who.groups.includes(stat.gid)) return (stat.mode & (bit << 3)) !== 0;
  return (stat.mode & bit) !== 0;
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}
