// Starts the real guest-agent binary on a temp Unix socket, for tests and the demo.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** Path of the guest-agent launcher in this checkout. */
export const GUEST_AGENT_BIN = fileURLToPath(new URL("../../guest/bin/guest-agent", import.meta.url));

export interface AgentProcess {
  readonly process: ChildProcess;
  readonly pid: number;
  /** The agent's Unix socket. */
  readonly socketPath: string;
  /** Everything the agent wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM, wait for exit, remove the temp dir. Resolves to the exit code. */
  stop(): Promise<number | null>;
}

export interface StartAgentOptions {
  /** Extra command-line arguments. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Socket path; default a fresh temp dir. */
  socketPath?: string;
}

/** Spawns the agent and resolves once it reports that it is serving. */
export async function startAgent(options: StartAgentOptions = {}): Promise<AgentProcess> {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-agent-"));
  const socketPath = options.socketPath ?? join(dir, "agent.sock");
  const child = spawn(GUEST_AGENT_BIN, ["--listen", `unix:${socketPath}`, ...(options.args ?? [])], {
    env: options.env ?? process.env,
    stdio: ["ignore", "inherit", "pipe"],
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (text: string) => {
    stderr += text;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const onData = () => {
      if (stderr.includes("serving on")) done(resolve);
    };
    const onExit = (code: number | null) => done(() => reject(new Error(`guest-agent exited (${code}): ${stderr}`)));
    const timer = setTimeout(() => done(() => reject(new Error(`guest-agent did not start: ${stderr}`))), 15_000);
    const done = (then: () => void) => {
      clearTimeout(timer);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      then();
    };
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
  });
  return {
    process: child,
    pid: child.pid as number,
    socketPath,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
