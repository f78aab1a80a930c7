// Starts the C-core legacy agent (../c-core-legacy-agent/guest_legacy_agent.py): a stand-in
// for the existing Go agent on another gRPC stack, Python's grpcio, whose server enforces
// gRPC's default keepalive policy the way a stock grpc-go server does. The grpc-js test
// agents do not enforce it, so only this one shows what a host's pings do to an existing
// agent. It needs Debian's python3-grpcio and python3-protobuf (scripts/test-deps.sh).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stopChild } from "./stop-child.js";

/** The agent script; run it by hand with `/usr/bin/python3 PATH unix:SOCKET`. */
export const C_CORE_LEGACY_AGENT_SCRIPT = fileURLToPath(
  new URL("../c-core-legacy-agent/guest_legacy_agent.py", import.meta.url),
);

// Debian's interpreter, the one python3-grpcio is installed for: a pyenv or venv python3
// earlier on PATH would not have it.
const PYTHON = "/usr/bin/python3";
// How long a stopping agent gets after SIGTERM before it is killed.
const STOP_GRACE_MS = 5000;

/** Options of startCCoreLegacyAgent. */
export interface CCoreLegacyAgentOptions {
  /** Socket path. Default: `agent.sock` in a fresh temp dir. */
  socketPath?: string;
  /**
   * Added to the agent's environment (which is the test's). Commands it runs see it too;
   * `GRPC_VERBOSITY=debug` with `GRPC_TRACE=http_keepalive,bdp_estimator` makes C-core log
   * the pings it receives and the GOAWAY it sends.
   */
  env?: NodeJS.ProcessEnv;
}

/** A running C-core legacy agent. */
export interface CCoreLegacyAgent {
  readonly socketPath: string;
  /** The target string for clients: `unix:PATH`. */
  readonly target: string;
  readonly pid: number;
  readonly process: ChildProcess;
  /** Everything the agent wrote (its call log and C-core's) so far. */
  log(): string;
  /** SIGTERM, SIGKILL after 5 s, waits for the exit, removes the temp dir; resolves to the exit code. */
  stop(): Promise<number | null>;
}

/** Starts the agent and resolves once it serves (it said `listening` on stdout). */
export async function startCCoreLegacyAgent(options: CCoreLegacyAgentOptions = {}): Promise<CCoreLegacyAgent> {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-c-core-legacy-"));
  const socketPath = options.socketPath ?? join(dir, "agent.sock");
  const target = `unix:${socketPath}`;
  // -I: none of the test's PYTHON* variables or user site packages change what runs.
  const child = spawn(PYTHON, ["-I", C_CORE_LEGACY_AGENT_SCRIPT, target], {
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout?.setEncoding("utf8");
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (text: string) => {
    log += text;
  });
  // A spawn that failed (no /usr/bin/python3) emits "error" and never "exit".
  const exited = new Promise<number | null>((done) => {
    child.once("exit", (code) => done(code));
    child.once("error", () => done(null));
  });
  const stop = async () => {
    const force = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    try {
      return await stopChild(child, exited, "SIGTERM", dir);
    } finally {
      clearTimeout(force);
    }
  };
  try {
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`C-core legacy agent did not start within 15 s: ${log}`)), 15_000);
      let stdout = "";
      child.stdout?.on("data", (text: string) => {
        log += text;
        stdout += text;
        if (stdout.includes(`listening ${target}\n`)) {
          clearTimeout(timer);
          ready();
        }
      });
      child.once("error", (error) => {
        clearTimeout(timer);
        fail(new Error(`C-core legacy agent: cannot run ${PYTHON}: ${error.message}`));
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`C-core legacy agent exited (${code}): ${log}`));
      });
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { socketPath, target, pid: child.pid as number, process: child, log: () => log, stop };
}
