// Shared by the reliability tests: waiting with a bound, proving the agent still serves,
// finding what a command left behind, and running a host process that a test can kill.
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { GuestClient } from "@guestkit/host";
import { type AgentProcess, describeFds, sampleProcess } from "@guestkit/testkit";
import { expect } from "vitest";

/** Polls `condition` every 20 ms; rejects naming `what` if it does not hold within `timeoutMs`. */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await condition()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** setTimeout as a promise. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The agent answers a trivial command: the check every bad-input test ends with. */
export async function expectServing(client: GuestClient): Promise<void> {
  const result = await client.run(["echo", "still serving"]);
  expect(result.stdout).toBe("still serving\n");
  expect(result.exit.code).toBe(0);
}

/** Live processes (zombies excluded) in session `sid`: what a command started with setsid left. */
export function sessionMembers(sid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue;
    }
    // "pid (comm) state ppid pgrp session ..."
    const [state, , , session] = text.slice(text.lastIndexOf(")") + 2).split(" ");
    if (Number(session) === sid && state !== "Z") found.push(Number(name));
  }
  return found;
}

/** What the agent holds right now, for before/after comparisons. */
export interface AgentLoad {
  fds: number;
  descendants: number;
  zombies: number;
  rssBytes: number;
}

/** Samples the agent's fds, descendants and RSS. */
export function agentLoad(agent: AgentProcess): AgentLoad {
  const stats = sampleProcess(agent.pid);
  return { fds: stats.fds, descendants: stats.descendants.length, zombies: stats.zombies, rssBytes: stats.rssBytes };
}

/**
 * Waits until the agent is back to `baseline` in open fds and has no descendants (none
 * running, no zombie): a call that ended must leave nothing behind. On timeout, the
 * assertion message lists the fds so the leak can be found.
 */
export async function expectSettled(agent: AgentProcess, baseline: AgentLoad, timeoutMs = 10_000): Promise<void> {
  try {
    await waitFor(
      "the agent to release everything",
      () => {
        const now = agentLoad(agent);
        return now.fds <= baseline.fds && now.descendants === 0;
      },
      timeoutMs,
    );
  } catch {
    const now = agentLoad(agent);
    expect({ fds: now.fds, descendants: now.descendants, open: describeFds(agent.pid) }).toEqual({
      fds: baseline.fds,
      descendants: 0,
      open: describeFds(agent.pid),
    });
  }
}

/** A running host-worker.ts process and the JSON events it printed. */
export interface HostWorker {
  readonly child: ChildProcess;
  readonly events: Array<Record<string, unknown>>;
  /** Resolves with the first event for which `match` holds. */
  next(match: (event: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>;
  /** Everything it wrote to stderr. */
  stderr(): string;
}

const WORKER = fileURLToPath(new URL("./fixtures/host-worker.ts", import.meta.url));

/** Starts fixtures/host-worker.ts with `job` (see that file). */
export function startHostWorker(job: Record<string, unknown>): HostWorker {
  const child = spawn(process.execPath, [WORKER, JSON.stringify(job)], { stdio: ["ignore", "pipe", "pipe"] });
  const events: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  let buffered = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (text: string) => {
    stderr += text;
  });
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (text: string) => {
    buffered += text;
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) if (line.trim() !== "") events.push(JSON.parse(line) as Record<string, unknown>);
    for (const wake of waiters) wake();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    events,
    stderr: () => stderr,
    next(match, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(match);
          if (found) {
            finish();
            resolve(found);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            finish();
            reject(new Error(`host worker exited without the awaited event; stderr: ${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`host worker: no matching event within ${timeoutMs} ms; stderr: ${stderr}`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off("exit", check);
        };
        waiters.add(check);
        child.once("exit", check);
        check();
      });
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}
