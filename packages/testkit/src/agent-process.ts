// Starts the real guest-agent binary on a temp Unix socket, for tests and the demo.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stopChild } from "./stop-child.js";

/** Path of the guest-agent launcher in this checkout. */
export const GUEST_AGENT_BIN = fileURLToPath(new URL("../../guest/bin/guest-agent", import.meta.url));

/** The guestctl launcher in this checkout (what `node_modules/.bin/guestctl` runs). */
export const GUESTCTL_BIN = fileURLToPath(new URL("../../host/bin/guestctl", import.meta.url));

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

/** Spawns the agent and resolves once its socket accepts connections. */
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
  try {
    await waitUntilAccepting(socketPath, exited, () => stderr);
  } catch (error) {
    // Never leave an agent behind when start-up failed.
    await stopChild(child, exited, "SIGKILL", dir);
    throw error;
  }
  return {
    process: child,
    pid: child.pid as number,
    socketPath,
    stderr: () => stderr,
    stop: () => stopChild(child, exited, "SIGTERM", dir),
  };
}

// Ready means the socket accepts a connection: independent of what the agent logs
// (--quiet prints nothing), and true only once grpc-js is listening.
async function waitUntilAccepting(
  socketPath: string,
  exited: Promise<number | null>,
  stderr: () => string,
): Promise<void> {
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
  });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`guest-agent exited (${exitCode}): ${stderr()}`);
    if (await accepts(socketPath)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`guest-agent did not start within 15 s: ${stderr()}`);
}

function accepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
