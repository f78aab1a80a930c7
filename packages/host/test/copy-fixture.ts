// Shared by the copyTo/copyFrom tests: they drive the copy functions straight on an
// agent's Unix socket (no endpoint in between), with a real connection that learned the
// agent's capabilities, the way the client hands it to them.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentProcess, startAgent } from "@guestkit/testkit";
import { afterAll, beforeAll, beforeEach } from "vitest";
import { type GuestChannel, GuestConnection } from "../src/transport/guest-connection.js";

/** A connected channel to the agent at `socketPath`, and how to close it. */
export interface CopyClient extends GuestChannel {
  close(): void;
}

/** Connects to the agent at `socketPath` as the client does (capabilities learned). */
export async function connectCopyClient(socketPath: string): Promise<CopyClient> {
  const connection = new GuestConnection({ kind: "unix", path: socketPath });
  const channel = await connection.ready();
  return Object.assign(Object.create(channel) as GuestChannel, {
    close: () => void connection.close(),
  }) as CopyClient;
}

/** What the hooks useCopyAgent registers provide; read it inside tests and hooks only. */
export interface CopySuite {
  /** The connection to the file's agent. */
  readonly client: CopyClient;
  /** The running test's temp dir: both sides' paths live in it, as the agent runs here. */
  readonly work: string;
}

/**
 * Registers the set-up the copy tests share: one real agent for the whole file (an agent
 * takes a while to start) and a fresh temp dir per test, removed after it, so no test
 * sees another's files.
 */
export function useCopyAgent(workDirPrefix: string): CopySuite {
  let agent: AgentProcess;
  let client: CopyClient;
  let work: string;
  beforeAll(async () => {
    agent = await startAgent();
    client = await connectCopyClient(agent.socketPath);
  });
  afterAll(async () => {
    client.close();
    await agent.stop();
  });
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), workDirPrefix));
    return () => rm(work, { recursive: true, force: true });
  });
  return {
    get client() {
      return client;
    },
    get work() {
      return work;
    },
  };
}

/**
 * Samples RSS every 20 ms while `run` runs; resolves to the peak growth in MiB. Proves
 * a transfer streams: its memory must not grow with what it moves.
 */
export async function peakRssGrowth(run: () => Promise<unknown>): Promise<number> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  try {
    await run();
  } finally {
    clearInterval(timer);
    peak = Math.max(peak, process.memoryUsage().rss);
  }
  return (peak - base) / (1024 * 1024);
}
