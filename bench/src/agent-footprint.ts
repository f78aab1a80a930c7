// The agent itself: time from process start to serving, and its memory (VmRSS, VmHWM).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
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

/** Samples a process's VmRSS every few ms until stopped; resolves to the peak, MiB. */
export function sampleRss(pid: number, everyMs = 5): { stop(): number } {
  let peak = 0;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, memoryOf(pid).rss);
    } catch {}
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

/**
 * Starts fresh agents `count` times: time to the "serving on" line and idle RSS one
 * second later; `node -e 0` beside it as the floor of any Node program.
 */
export async function measureStartup(dir: string, count: number): Promise<Measurement[]> {
  const ready: number[] = [];
  const idle: number[] = [];
  for (let i = 0; i < count; i++) {
    const sandbox = await mkdtemp(join(dir, "start-"));
    try {
      const { ms, rss } = await startOnce(join(sandbox, "agent.sock"));
      ready.push(ms);
      idle.push(rss);
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
  ];
}

async function startOnce(socketPath: string): Promise<{ ms: number; rss: number }> {
  const start = performance.now();
  const child = spawn(GUEST_AGENT_BIN, ["--listen", `unix:${socketPath}`], { stdio: ["ignore", "ignore", "pipe"] });
  try {
    let log = "";
    const ms = await new Promise<number>((resolve, reject) => {
      child.stderr.setEncoding("utf8").on("data", (text: string) => {
        log += text;
        if (log.includes("serving on")) resolve(performance.now() - start);
      });
      child.once("exit", (code) => reject(new Error(`guest-agent exited (${code}): ${log}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return { ms, rss: memoryOf(child.pid as number).rss };
  } finally {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    if (child.exitCode === null) child.kill("SIGTERM");
    await exited;
  }
}

function runNode(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
    child.once("error", reject);
    child.once("exit", () => resolve());
  });
}
