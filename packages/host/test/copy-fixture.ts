// Shared by the copyTo/copyFrom tests: they drive a raw grpc-js client straight on an
// agent's Unix socket (no endpoint in between), the way the copy functions take it.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { GuestServiceClient, MAX_MESSAGE_BYTES } from "@guestkit/protocol";
import { type AgentProcess, startAgent } from "@guestkit/testkit";
import { afterAll, beforeAll, beforeEach } from "vitest";

/** A client of the agent at `socketPath`, allowed the protocol's largest messages as the host's own client is. */
export function connectCopyClient(socketPath: string): GuestServiceClient {
  return new GuestServiceClient(`unix:${socketPath}`, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });
}

/** What the hooks useCopyAgent registers provide; read it inside tests and hooks only. */
export interface CopySuite {
  /** The client of the file's agent. */
  readonly client: GuestServiceClient;
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
  let client: GuestServiceClient;
  let work: string;
  beforeAll(async () => {
    agent = await startAgent();
    client = connectCopyClient(agent.socketPath);
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
