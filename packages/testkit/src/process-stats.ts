// What a running process holds, read from /proc: resident memory, open file descriptors
// and the processes below it. Reliability tests and the soak compare these before and
// after a load to prove that nothing leaked; all of it is Linux-only, as the agent is.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** A snapshot of one process's resources. */
export interface ProcessStats {
  readonly pid: number;
  /** Resident set size (VmRSS), in bytes. */
  readonly rssBytes: number;
  /** Entries in /proc/PID/fd. */
  readonly fds: number;
  /** Every live descendant (children, grandchildren...), zombies included. */
  readonly descendants: readonly DescendantProcess[];
  /** How many of the descendants are zombies (exited, not yet reaped). */
  readonly zombies: number;
}

/** A process below the one sampled. */
export interface DescendantProcess {
  readonly pid: number;
  readonly ppid: number;
  /** The state letter of /proc/PID/stat: R, S, D, Z... */
  readonly state: string;
  /** The command name (comm), at most 15 bytes. */
  readonly name: string;
}

/** Reads /proc for `pid`. Throws (ENOENT) when the process does not exist. */
export function sampleProcess(pid: number): ProcessStats {
  const descendants = descendantsOf(pid);
  return {
    pid,
    rssBytes: rssBytesOf(pid),
    fds: readdirSync(`/proc/${pid}/fd`).length,
    descendants,
    zombies: descendants.filter((process) => process.state === "Z").length,
  };
}

/** VmRSS of `pid` in bytes. */
export function rssBytesOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** The open file descriptors of `pid` and what they point to, for a message when a count is off. */
export function describeFds(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.map((fd) => {
    try {
      return `${fd} -> ${readlinkSync(`${dir}/${fd}`)}`;
    } catch {
      return `${fd} (closed meanwhile)`;
    }
  });
}

/** Every live process whose ancestry leads to `pid`, by a scan of /proc. */
export function descendantsOf(pid: number): DescendantProcess[] {
  const all = new Map<number, DescendantProcess[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (!stat) continue;
    const siblings = all.get(stat.ppid);
    if (siblings) siblings.push(stat);
    else all.set(stat.ppid, [stat]);
  }
  const found: DescendantProcess[] = [];
  const queue = [pid];
  // A pid cannot be its own ancestor, but /proc is read while it changes: bound the walk.
  while (queue.length > 0 && found.length < 100_000) {
    const parent = queue.shift() as number;
    for (const child of all.get(parent) ?? []) {
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}

/**
 * Samples `pid`'s RSS every `intervalMs` until stop() is called; stop() resolves with the
 * peak and the samples' count. A sampler is how a test sees memory during a load rather
 * than only after it.
 */
export function sampleRss(pid: number, intervalMs = 50): { stop(): { peakBytes: number; samples: number } } {
  let peak = 0;
  let samples = 0;
  const take = () => {
    try {
      peak = Math.max(peak, rssBytesOf(pid));
      samples += 1;
    } catch {
      // The process went away; the caller finds out from its own checks.
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { peakBytes: peak, samples };
    },
  };
}

// /proc/PID/stat is "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
function readStat(pid: number): DescendantProcess | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  const [state = "", ppid = ""] = text.slice(close + 2).split(" ");
  return { pid, ppid: Number(ppid), state, name: text.slice(open + 1, close) };
}
