// Where the posix-spawn addon cannot be used, the launcher (process-launch.ts) starts
// this script with Node's spawn (its own session, stdio on pipes or on the command's
// terminal), for what the addon does between its clone and the exec, as Node cannot
// step in there: join the command's cgroup (process-cgroup.ts) before the command runs,
// so that nothing it starts can escape it; take the terminal as controlling terminal;
// close the descriptors the agent held that a child inherits (another command's
// terminal master: Node has neither fcntl nor close_range); switch user. Then it
// becomes the command.
//
// argv: node exec-trampoline.js UID GID CGROUP FILE ARGV0 [ARGS...], with UID and GID
// "-" to stay who it is, CGROUP "-" for none. It starts as root, so that it can always
// read this script, then drops to UID:GID with GID as its only group, as the addon
// does. The command's environment arrives with every name prefixed by ENV_PREFIX
// (exec-trampoline-env.ts), so that nothing meant for the command (NODE_OPTIONS,
// LD_PRELOAD...) changes how this Node starts.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isatty } from "node:tty";
import { startExitCode } from "./exec/exec-exit.js";
import { ENV_PREFIX } from "./exec-trampoline-env.js";

// O_CLOEXEC as /proc/PID/fdinfo prints it (octal "flags:").
const O_CLOEXEC = 0o2000000;

// On a terminal (TTY mode) a line ends in CR LF, as the terminal would have made it.
const EOL = process.stderr.isTTY ? "\r\n" : "\n";

function main(): void {
  const [uid = "", gid = "", cgroup = "", file = "", ...argv] = process.argv.slice(2);
  if (!file || argv.length === 0) {
    process.stderr.write(`exec-trampoline: usage: exec-trampoline UID GID CGROUP FILE ARGV0 [ARGS...]${EOL}`);
    process.exit(126);
  }
  if (cgroup !== "-") {
    // "0" is the writer itself. Nothing has been started yet, so nothing is outside.
    try {
      writeFileSync(join(cgroup, "cgroup.procs"), "0");
    } catch (error) {
      process.stderr.write(`${argv[0]}: cannot join its cgroup: ${(error as Error).message}${EOL}`);
      process.exit(126);
    }
  }
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith(ENV_PREFIX) && value !== undefined) env[name.slice(ENV_PREFIX.length)] = value;
  }
  if (isatty(0)) {
    // A session leader without a controlling terminal takes the first one it opens
    // without O_NOCTTY; it stays after the close. Before the user switch: the terminal
    // belongs to root.
    try {
      closeSync(openSync("/proc/self/fd/0", "r+"));
    } catch (error) {
      process.stderr.write(`${argv[0]}: cannot take its terminal: ${(error as Error).message}${EOL}`);
      process.exit(126);
    }
  }
  for (const fd of inheritableFds()) {
    try {
      closeSync(fd);
    } catch {
      // Already closed.
    }
  }
  // Node starts with SIGPIPE and SIGXFSZ ignored, and ignored signals survive execve.
  // Caught ones are reset to the default, which is what the command must start with.
  process.on("SIGPIPE", () => {});
  process.on("SIGXFSZ", () => {});
  try {
    if (uid !== "-" && gid !== "-") {
      process.setgroups?.([Number(gid)]);
      process.setgid?.(Number(gid));
      process.setuid?.(Number(uid));
    }
    if (typeof process.execve !== "function") throw new Error("this Node has no process.execve");
    // Node's execve() does not return an error: a failure aborts this process with a
    // native stack trace on the user's terminal. So the cases execvp() would handle are
    // sorted out before.
    const kind = executableKind(file);
    if (kind === "missing-interpreter") {
      process.stderr.write(`${argv[0]}: bad interpreter: no such file${EOL}`);
      process.exit(126);
    }
    if (kind === "other") {
      // No "#!" and not ELF: execvp() gets ENOEXEC and hands the file to /bin/sh.
      process.execve("/bin/sh", ["sh", file, ...argv.slice(1)], env);
    }
    process.execve(file, argv, env);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    process.stderr.write(`${argv[0]}: ${(error as Error).message}${EOL}`);
    process.exit(startExitCode(typeof code === "string" ? code : ""));
  }
}

// What the kernel would make of the file: an ELF binary, a "#!" script whose
// interpreter exists or does not, or something execve() refuses with ENOEXEC.
function executableKind(file: string): "direct" | "missing-interpreter" | "other" {
  const head = Buffer.alloc(256);
  let length = 0;
  const fd = openSync(file, "r");
  try {
    length = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const start = head.subarray(0, length);
  if (start.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return "direct";
  if (start[0] !== 0x23 || start[1] !== 0x21) return "other";
  const interpreter = /^#!\s*(\S+)/.exec(start.toString("latin1"))?.[1] ?? "";
  return interpreter && existsSync(interpreter) ? "direct" : "missing-interpreter";
}

// This process's descriptors above stderr that are not close-on-exec, from /proc.
function inheritableFds(): number[] {
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
  return fds;
}

main();
