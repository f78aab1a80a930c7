// File descriptors of the agent that a child would inherit. Node and libuv open
// everything close-on-exec, but node-pty's forkpty() leaves each terminal master without
// it, and Node has no fcntl() to fix that. Without care, every command started while
// another command's terminal is open would hold that terminal's master, and could read
// its output or type into it, whatever user it runs as.
import { readdirSync, readFileSync } from "node:fs";

// O_CLOEXEC as /proc/PID/fdinfo prints it (octal "flags:").
const O_CLOEXEC = 0o2000000;

/** The agent's open descriptors above stderr that are not close-on-exec, ascending. */
export function inheritableFds(): number[] {
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
