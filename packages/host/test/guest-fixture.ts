// A real agent behind the Cloud Hypervisor stand-in, as a host sees a microVM: the
// client dials `hvsock:<endpoint>:2222`, the endpoint joins it to the agent's socket.
import { mkdtemp, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentProcess, type HybridVsockEndpoint, startAgent, startHybridVsockEndpoint } from "@guestkit/testkit";
import { afterAll, afterEach, beforeAll, beforeEach, expect } from "vitest";
import { createGuestClient, type GuestClient } from "../src/guest-client.js";
import { GuestError } from "../src/guest-error.js";
import type { GuestConnectionOptions } from "../src/transport/guest-connection.js";

/** An agent, the endpoint in front of it, and the clients made on it (closed by stop()). */
export interface GuestFixture {
  readonly agent: AgentProcess;
  readonly endpoint: HybridVsockEndpoint;
  /** The agent's address through the endpoint, as guestctl's --target and createGuestClient take it. */
  readonly target: string;
  /** A new client of the agent through the endpoint. */
  client(options?: GuestConnectionOptions): GuestClient;
  /** Closes the clients made so far (between tests). */
  closeClients(): Promise<void>;
  /** Closes everything: clients, endpoint, agent. */
  stop(): Promise<void>;
}

/** Starts an agent and an endpoint that routes port 2222 to it. */
export async function startGuestFixture(): Promise<GuestFixture> {
  const agent = await startAgent();
  const endpoint = await startHybridVsockEndpoint();
  endpoint.register(2222, agent.socketPath);
  const target = endpoint.target(2222);
  const clients: GuestClient[] = [];
  const closeClients = async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
  };
  return {
    agent,
    endpoint,
    target,
    client(options = {}) {
      const client = createGuestClient(target, options);
      clients.push(client);
      return client;
    },
    closeClients,
    async stop() {
      await closeClients();
      await endpoint.close();
      await agent.stop();
    },
  };
}

/** What the hooks useGuestFixture registers provide; read it inside tests and hooks only. */
export interface GuestSuite {
  /** The file's fixture. */
  readonly guest: GuestFixture;
  /** The running test's temp dir (only with `tempDirPrefix`). */
  readonly dir: string;
}

/** Options of useGuestFixture. */
export interface GuestSuiteOptions {
  /** Gives every test a fresh temp dir named with this prefix, removed after it. */
  tempDirPrefix?: string;
  /** Runs after every test, before its clients are closed and its temp dir removed. */
  afterEachTest?: () => void;
}

/**
 * Registers the set-up the tests against a guest share: one fixture for the whole file
 * (an agent takes a while to start), the clients a test made closed after it so none
 * outlives its test, and optionally a temp dir per test. The dir is realpath'd so the
 * paths the agent reports (a cwd, a resolved link) equal the ones a test builds, even
 * where TMPDIR is a symlink.
 */
export function useGuestFixture(options: GuestSuiteOptions = {}): GuestSuite {
  const { tempDirPrefix, afterEachTest } = options;
  let guest: GuestFixture;
  let dir: string;
  beforeAll(async () => {
    guest = await startGuestFixture();
  });
  afterAll(async () => {
    await guest.stop();
  });
  if (tempDirPrefix !== undefined) {
    beforeEach(async () => {
      dir = await realpath(await mkdtemp(join(tmpdir(), tempDirPrefix)));
    });
  }
  afterEach(async () => {
    afterEachTest?.();
    await guest.closeClients();
    if (tempDirPrefix !== undefined) await rm(dir, { recursive: true, force: true });
  });
  return {
    get guest() {
      return guest;
    },
    get dir() {
      return dir;
    },
  };
}

/** The GuestError a call rejected with; fails the test if it resolved or threw something else. */
export async function rejection(promise: Promise<unknown>): Promise<GuestError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(GuestError);
  return error as GuestError;
}

/** Whether a process exists (the agent runs on this machine, so guest pids are ours to check). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `condition` every 10 ms until it holds; the test's own timeout bounds it. */
export async function waitFor(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 10));
}
