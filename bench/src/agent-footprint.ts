// The agent itself: time from process start to serving, and its memory (VmRSS, VmHWM).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { GUEST_AGENT_BIN } from "@guestkit/testkit";
import { type Measurement, measured, timeEach } from "./stats.js";

const SECTION = "agent";

/** VmRSS and VmHWM of a process, in MiB. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN) / 1024;
  return { rss: field("VmRSS"), hwm: field("VmHWM") };
}

/**
 * Starts fresh agents `count` times: time to the "serving on" line and idle RSS one
 * second later; `node -e 0` beside it as the floor of any Node program.
 */
export async function measureStartup(dir: string, count: number): Promise<Measurement[]> {
  const ready: number[] = [];
  const idle: number[] = [];
  const floorReady: number[] = [];
  const floorIdle: number[] = [];
  for (let i = 0; i < count; i++) {
    const sandbox = await mkdtemp(join(dir, "start-"));
    try {
      const agent = await startOnce(GUEST_AGENT_BIN, ["--listen", `unix:${join(sandbox, "agent.sock")}`]);
      ready.push(agent.ms);
      idle.push(agent.rss);
      const floor = await startOnce(process.execPath, [
        ...AGENT_NODE_FLAGS,
        "--input-type=module",
        "-e",
        grpcServerAlone(join(sandbox, "floor.sock")),
      ]);
      floorReady.push(floor.ms);
      floorIdle.push(floor.rss);
    } finally {
      await rm(sandbox, { recursive: true, force: true });
    }
  }
  const nodeFloor = await timeEach(count, () => runNode());
  return [
    measured(SECTION, "start to serving", "ms", ready, {
      note: "spawn of the guest-agent launcher to its 'serving on' log line",
    }),
    measured(SECTION, "node -e 0 (floor)", "ms", nodeFloor),
    measured(SECTION, "idle RSS", "MiB", idle, { note: "VmRSS 1 s after serving, no connection" }),
    measured(SECTION, "grpc-js server alone: start to serving (floor)", "ms", floorReady),
    measured(SECTION, "grpc-js server alone: idle RSS (floor)", "MiB", floorIdle, {
      note: "Node with the agent's V8 flags, grpc-js loaded and a Server bound to a Unix socket, nothing else: the least any grpc-js agent holds",
    }),
  ];
}

// The V8 flags bin/guest-agent starts Node with (see the launcher for why).
const AGENT_NODE_FLAGS = ["--max-semi-space-size=2", "--initial-old-space-size=64"];

// A program that is only a grpc-js server: the grpc-js the agent uses, bound to `socketPath`.
function grpcServerAlone(socketPath: string): string {
  const grpcJs = createRequire(GUEST_AGENT_BIN).resolve("@grpc/grpc-js");
  return `import grpc from ${JSON.stringify(grpcJs)};
const server = new grpc.Server();
server.bindAsync(${JSON.stringify(`unix:${socketPath}`)}, grpc.ServerCredentials.createInsecure(), (error) => {
  if (error) throw error;
  process.stderr.write("serving on\\n");
});`;
}

// Starts `command` and times it to its "serving on" line; VmRSS one second later.
async function startOnce(command: string, args: string[]): Promise<{ ms: number; rss: number }> {
  const start = performance.now();
  const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
  try {
    let log = "";
    const ms = await new Promise<number>((resolve, reject) => {
      child.stderr.setEncoding("utf8").on("data", (text: string) => {
        log += text;
        if (log.includes("serving on")) resolve(performance.now() - start);
      });
      child.once("exit", (code) => reject(new Error(`${command} exited (${code}): ${log}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return { ms, rss: memoryOf(child.pid as number).rss };
  } finally {
    // A child that already exited (a failed start) has nothing left to wait for.
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
  }
}

function runNode(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
    child.once("error", reject);
    child.once("exit", () => resolve());
  });
}
