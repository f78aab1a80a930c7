// Runs between forkpty() and the command in TTY mode whenever the agent holds
// descriptors a child would inherit (another command's terminal master; see
// process-inherited-fds.ts): a C program would call fcntl or close_range, and Node has
// neither, so this closes them from inside the child and then becomes the command.
//
// argv: node exec-trampoline.js UID GID FILE ARGV0 [ARGS...], UID and GID "-" to stay
// who it is; it starts as root so that it can always read this script, then drops to
// UID:GID with GID as the only group, as the pipe-mode spawn does. The command's environment arrives
// with every name prefixed by ENV_PREFIX (exec-trampoline-env.ts), so that nothing meant for the command
// (NODE_OPTIONS, LD_PRELOAD...) changes how this Node starts.
import { closeSync } from "node:fs";
import { ENV_PREFIX } from "./exec-trampoline-env.js";
import { inheritableFds } from "./process-inherited-fds.js";

function main(): void {
  const [uid = "", gid = "", file = "", ...argv] = process.argv.slice(2);
  if (!file || argv.length === 0) {
    process.stderr.write("exec-trampoline: usage: exec-trampoline UID GID FILE ARGV0 [ARGS...]\r\n");
    process.exit(126);
  }
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith(ENV_PREFIX) && value !== undefined) env[name.slice(ENV_PREFIX.length)] = value;
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
    process.execve(file, argv, env);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    process.stderr.write(`${argv[0]}: ${(error as Error).message}\r\n`);
    process.exit(code === "ENOENT" ? 127 : 126);
  }
}

main();
