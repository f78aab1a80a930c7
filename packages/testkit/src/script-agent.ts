// Test agents that run as a Node script in a process of their own (the hostile and the
// rogue agent): their own process so memory tests measure the host alone, and so a
// misbehaving server cannot disturb the test's event loop.
import { type ChildProcess, spawn } from "node:child_process";
import { stopChild } from "./stop-child.js";

/** A started script agent. */
export interface ScriptAgent {
  readonly child: ChildProcess;
  /** SIGKILL, wait for the exit, remove `dir`. */
  stop(): Promise<void>;
}

/**
 * Runs `node SCRIPT CONFIG_JSON` and resolves once the script prints "ready" on stdout.
 * On failure (exit, 15 s without "ready") the process is killed and `dir` removed.
 */
export async function startScriptAgent(
  label: string,
  script: string,
  config: object,
  dir: string,
): Promise<ScriptAgent> {
  const child = spawn(process.execPath, [script, JSON.stringify(config)], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.setEncoding("utf8");
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (text: string) => {
    output += text;
  });
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  try {
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`${label} did not start: ${output}`)), 15_000);
      child.stdout?.on("data", (text: string) => {
        if (text.includes("ready")) {
          clearTimeout(timer);
          ready();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`${label} exited (${code}): ${output}`));
      });
    });
  } catch (error) {
    await stopChild(child, exited, "SIGKILL", dir);
    throw error;
  }
  return { child, stop: () => stopChild(child, exited, "SIGKILL", dir) };
}
