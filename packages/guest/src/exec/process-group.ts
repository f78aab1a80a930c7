// Signalling and ending a command's whole process tree. Every command runs as the leader
// of its own session and process group (pgid = sid = its pid), so the group and the
// session are named by the pid the client saw in `started`. Where commands have cgroups
// (process-cgroup.ts), the cgroup is the tree; elsewhere the session is, and what the
// command started with setsid is out of reach.
import { readdirSync, readFileSync } from "node:fs";
import type { CommandCgroup } from "./process-cgroup.js";
import type { ProcessTree } from "./process-handle.js";

/** How long a group gets between SIGTERM and SIGKILL when the agent ends it. */
export const KILL_GRACE_MS = 2000;

// While a tree is being terminated, how often to look whether anything is left in it.
const TERMINATE_POLL_MS = 50;

/**
 * Ends a command and everything it started (a timeout, a cancel, a kill, the agent's
 * stop): SIGTERM to the whole tree, SIGKILL to whatever is still there after
 * KILL_GRACE_MS. Resolves once the command was reaped and nothing of it is left running.
 */
export async function terminateTree(tree: ProcessTree, exited: Promise<unknown>): Promise<void> {
  let reaped = false;
  void exited.then(() => {
    reaped = true;
  });
  tree.signal("SIGTERM");
  // Lets an exit already known be seen before the first look.
  await Promise.resolve();
  const leftRunning = () => !reaped || tree.running();
  const deadline = Date.now() + KILL_GRACE_MS;
  while (Date.now() < deadline && leftRunning()) await delay(TERMINATE_POLL_MS);
  if (leftRunning()) await tree.kill();
  await exited;
}

/** The tree of the command `pid`: its cgroup when it has one, else its session. */
export function commandTree(pid: number, cgroup: CommandCgroup | undefined): ProcessTree {
  if (!cgroup) {
    return {
      signal: (signal) => signalSession(pid, signal),
      running: () => sessionMembers(pid).length > 0,
      kill: async () => signalSession(pid, "SIGKILL"),
      release: () => {},
    };
  }
  // The process group as well: a command started through the trampoline (exec-trampoline.ts)
  // joins its cgroup only once that runs, and until then it is alone in its group.
  return {
    signal(signal) {
      signalProcessGroup(pid, signal);
      cgroup.signal(signal);
    },
    running: () => cgroup.populated(),
    async kill() {
      signalProcessGroup(pid, "SIGKILL");
      await cgroup.kill();
    },
    release: () => cgroup.release(),
  };
}

/**
 * Sends `signal` to process group `pgid`. Returns false when no process is left in it
 * (ESRCH), true otherwise; other errors (EPERM) are not the caller's to handle either,
 * so they count as "still there".
 */
export function signalProcessGroup(pgid: number, signal: NodeJS.Signals | number): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    return (error as { code?: unknown }).code !== "ESRCH";
  }
}

/**
 * Sends `signal` to the process group and to every other process in session `sid`.
 * A shell with job control (an interactive shell in TTY mode) puts each job in a process
 * group of its own, and those must not survive a timeout or a cancelled call. The
 * session id cannot be forged by a process (only setsid leaves it), so this never
 * reaches outside what the command started.
 */
export function signalSession(sid: number, signal: NodeJS.Signals | number): void {
  signalProcessGroup(sid, signal);
  for (const pid of sessionMembers(sid)) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone between the scan and the kill.
    }
  }
}

/**
 * Pids of the live processes whose session id is `sid`, from /proc. Zombies are left
 * out: they are dead already, no signal reaches them, and reaping the ones that were
 * reparented is init's job.
 */
export function sessionMembers(sid: number): number[] {
  return scanProc((stat) => stat.session === sid && stat.state !== "Z").map((stat) => stat.pid);
}

/** What /proc/PID/stat says of a process. */
export interface ProcStat {
  readonly pid: number;
  /** "R", "S", "Z"...: a zombie is dead already. */
  readonly state: string;
  readonly pgrp: number;
  readonly session: number;
  /** When it started, in clock ticks since boot: tells it from a later process with the same pid. */
  readonly startTime: string;
}

function scanProc(keep: (stat: ProcStat) => boolean): ProcStat[] {
  const found: ProcStat[] = [];
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return found;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const stat = procStat(Number(name));
    if (stat && keep(stat)) found.push(stat);
  }
  return found;
}

/**
 * /proc/PID/stat of `pid`, undefined when there is no such process. The line is "pid
 * (comm) state ppid pgrp session ... starttime (field 22)"; comm may itself contain
 * spaces and parentheses, so the fields are taken after the last ")".
 */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const [state = "", , pgrp = "", session = ""] = fields;
  return { pid, state, pgrp: Number(pgrp), session: Number(session), startTime: fields[19] ?? "" };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
