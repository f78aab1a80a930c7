// The agent needs Node 24: without the posix-spawn addon every command starts through
// process.execve (exec-trampoline.ts, Node 22.15 and later), and node-pty loses a command's last output at exit with the
// libuv of Node before 24 (1.52 fixed it). On an older Node TTY execs would fail or
// lose output, so the agent refuses to start there, saying what it needs. main.ts
// imports this first, so it runs before any other module of the agent is evaluated.

/** The oldest Node major version the agent runs on. */
export const NEEDED_NODE_MAJOR = 24;

/** Why this Node cannot run the agent, or undefined when it can. */
export function nodeProblem(): string | undefined {
  const major = Number(process.versions.node.split(".")[0]);
  if (major >= NEEDED_NODE_MAJOR && typeof process.execve === "function") return undefined;
  return `needs Node ${NEEDED_NODE_MAJOR} or newer to serve TTYs (process.execve, libuv 1.52); this is Node ${process.versions.node}`;
}

const problem = nodeProblem();
if (problem !== undefined) {
  process.stderr.write(`guest-agent: ${problem} (${process.execPath})\n`);
  process.exit(1);
}
