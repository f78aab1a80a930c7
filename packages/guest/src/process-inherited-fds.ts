// File descriptors of the agent that a child would inherit. Node and libuv open
// everything close-on-exec, but node-pty's forkpty() leaves each terminal master without
// it, and Node has no fcntl() to fix that. Without care, every command started while
// another command's terminal is open would hold that terminal's master, and could read
// its output or type into it, whatever user it runs as.
//
// Scanning /proc/self/fdinfo before every spawn cost O(open descriptors) of synchronous
// work per command (a quarter of the agent's time under 256 concurrent execs). The only
// such descriptors the agent creates are the terminal masters, so those are registered
// as they are opened and closed, and /proc is read once, before the first command, for
// anything the agent inherited from its parent without close-on-exec.
import { readdirSync, readFileSync } from "node:fs";

// O_CLOEXEC as /proc/PID/fdinfo prints it (octal "flags:").
const O_CLOEXEC = 0o2000000;

let inherited: readonly number[] | undefined;
const terminalMasters = new Set<number>();

/**
 * The agent's descriptors above stderr that a child would inherit, ascending: what it
 * inherited without close-on-exec from its parent, and the open terminal masters.
 */
export function inheritableFds(): number[] {
  inherited ??= scanInheritableFds();
  if (terminalMasters.size === 0) return [...inherited];
  return [...new Set([...inherited, ...terminalMasters])].sort((a, b) => a - b);
}

/**
 * Records a terminal master that forkpty() just opened (not close-on-exec). Call it at
 * once, before anything else can start a command; the returned function forgets it,
 * and must run only once the descriptor is really closed.
 */
export function registerTerminalMaster(fd: number): () => void {
  // The scan of what the agent inherited must not mistake this master for it.
  inherited ??= scanInheritableFds().filter((other) => other !== fd);
  terminalMasters.add(fd);
  return () => {
    terminalMasters.delete(fd);
  };
}

/**
 * Reads /proc/self/fdinfo: this process's descriptors above stderr that are not
 * close-on-exec, ascending. For a process that tracks nothing itself (the trampoline).
 */
export function scanInheritableFds(): number[] {
  let names: string[];
  try {
    names = readdirSync("/proc/self/fdinfo");
  } catch {
    return [];
  }
  const fds: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
    } catch {
      continue; // The directory listing's own descriptor, closed by now.
    }
    const flags = /^flags:\s*([0-7]+)/m.exec(info)?.[1];
    if (flags !== undefined && (Number.parseInt(flags, 8) & O_CLOEXEC) === 0) fds.push(fd);
  }
  return fds.sort((a, b) => a - b);
}
