// Shared by the copy and stat tests: a real agent (optionally under a restrictive umask
// or as an unprivileged user), a real grpc-js client, and helpers that drive the file
// calls the way a host does.
import { chmodSync, chownSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CopyFromGuestRequestSchema,
  type CopyFromGuestResponse,
  type CopyToGuestRequestSchema,
  type CopyToGuestResponse,
  GuestServiceClient,
  CopyToGuestRequestSchema as RequestSchema,
  StatPathRequestSchema,
  type StatPathResponse,
} from "@guestkit/protocol";
import { type AgentProcess, startAgent } from "@guestkit/testkit";
import { afterAll, afterEach, beforeAll, beforeEach } from "vitest";

/** The uid/gid of "nobody" on Debian. */
export const NOBODY = 65534;

/** How to start the agent under test. */
export interface TestAgentOptions {
  /** Run the agent with this umask (e.g. "077"). */
  umask?: string;
  /** Run the agent as nobody:nogroup (setpriv), so permission checks apply to it. */
  asNobody?: boolean;
}

/** A started agent with a connected client; `stop()` ends both and removes their files. */
export interface TestAgent {
  agent: AgentProcess;
  client: GuestServiceClient;
  stop(): Promise<void>;
}

/**
 * Starts the real agent. The umask and user are applied by a tiny launcher given as
 * GUESTKIT_NODE (the agent's launcher execs it in place of node), so the agent process
 * itself runs with them; the launcher `exec`s, so the pid is still the agent's.
 */
export async function startTestAgent(options: TestAgentOptions = {}): Promise<TestAgent> {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-copy-agent-"));
  const launcher = join(dir, "node");
  const drop = options.asNobody ? `setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups ` : "";
  writeFileSync(
    launcher,
    `#!/bin/sh\n${options.umask ? `umask ${options.umask}\n` : ""}exec ${drop}"${process.execPath}" "$@"\n`,
    { mode: 0o755 },
  );
  // The agent must be able to create its socket, also as nobody.
  const socketParent = mkdtempSync(join(tmpdir(), "guestkit-copy-socket-"));
  if (options.asNobody) chownSync(socketParent, NOBODY, NOBODY);
  const socketPath = join(socketParent, "agent.sock");
  const agent = await startAgent({
    socketPath,
    env: { ...process.env, GUESTKIT_NODE: launcher },
  });
  const client = new GuestServiceClient(`unix:${socketPath}`, grpc.credentials.createInsecure());
  return {
    agent,
    client,
    async stop() {
      client.close();
      await agent.stop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(socketParent, { recursive: true, force: true });
    },
  };
}

/** One CopyToGuest request, as tests write them. */
export type RequestInit = MessageInitShape<typeof CopyToGuestRequestSchema>;
type StartInit = Extract<NonNullable<RequestInit["request"]>, { case: "start" }>["value"];

/** Request messages for one entry: start, data chunks of `chunkSize`, end. */
export function entryMessages(start: StartInit, data?: Uint8Array, chunkSize = 32 * 1024): RequestInit[] {
  const messages: RequestInit[] = [{ request: { case: "start", value: start } }];
  if (data) {
    for (let offset = 0; offset < data.length; offset += chunkSize) {
      messages.push({ request: { case: "data", value: data.subarray(offset, offset + chunkSize) } });
    }
  }
  messages.push({ request: { case: "end", value: {} } });
  return messages;
}

/** A file entry whose size is the data's length. */
export function fileMessages(path: string, data: Uint8Array | string, start: Partial<StartInit> = {}): RequestInit[] {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  return entryMessages({ path, size: BigInt(bytes.length), ...start } as StartInit, bytes);
}

/** Runs one CopyToGuest call with these messages (respecting backpressure) and returns the response. */
export function upload(client: GuestServiceClient, messages: Iterable<RequestInit>): Promise<CopyToGuestResponse> {
  return new Promise((resolve, reject) => {
    const call = client.copyToGuest(new grpc.Metadata(), {}, (error, response) => {
      if (error || !response) reject(error ?? new Error("no response"));
      else resolve(response);
    });
    const iterator = messages[Symbol.iterator]();
    const pump = () => {
      for (;;) {
        const next = iterator.next();
        if (next.done) {
          call.end();
          return;
        }
        if (!call.write(create(RequestSchema, next.value))) {
          call.once("drain", pump);
          return;
        }
      }
    };
    // A failed upload answers early and stops reading; writes after that are discarded.
    call.on("error", () => undefined);
    pump();
  });
}

/** Runs one CopyFromGuest call to its end and returns every response message. */
export function download(
  client: GuestServiceClient,
  path: string,
  followLinks = false,
  batch = false,
): Promise<CopyFromGuestResponse[]> {
  return new Promise((resolve, reject) => {
    const messages: CopyFromGuestResponse[] = [];
    const call = client.copyFromGuest(
      create(CopyFromGuestRequestSchema, { path, followLinks, batch }),
      new grpc.Metadata(),
    );
    call.on("data", (message: CopyFromGuestResponse) => messages.push(message));
    call.on("error", reject);
    call.on("end", () => resolve(messages));
  });
}

/** Runs one StatPath call. */
export function statPath(client: GuestServiceClient, path: string, followLinks = false): Promise<StatPathResponse> {
  return new Promise((resolve, reject) => {
    client.statPath(
      create(StatPathRequestSchema, { path, followLinks }),
      new grpc.Metadata(),
      {},
      (error, response) => {
        if (error || !response) reject(error ?? new Error("no response"));
        else resolve(response);
      },
    );
  });
}

/** A fresh temp dir (mode 0755 so an unprivileged agent can walk it) and its removal. */
export function makeTempDir(prefix = "guestkit-copy-"): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** What the hooks useTestAgent registers provide; read it inside tests and hooks only. */
export interface TestAgentSuite {
  /** The agent of the enclosing describe, with its client. */
  readonly agent: TestAgent;
  /** The running test's temp dir. */
  readonly dir: string;
}

/**
 * Registers, in the enclosing describe, the set-up the copy and stat tests share: one
 * agent for the block (an agent takes a while to start) and a fresh temp dir per test,
 * removed after it, so no test sees another's files.
 */
export function useTestAgent(options: TestAgentOptions = {}): TestAgentSuite {
  let agent: TestAgent;
  let temp: ReturnType<typeof makeTempDir>;
  beforeAll(async () => {
    agent = await startTestAgent(options);
  });
  afterAll(async () => {
    await agent.stop();
  });
  beforeEach(() => {
    temp = makeTempDir();
  });
  afterEach(() => {
    temp.remove();
  });
  return {
    get agent() {
      return agent;
    },
    get dir() {
      return temp.dir;
    },
  };
}

/** Polls `check` until it returns true, for at most `timeoutMs`; for effects the agent completes after answering. */
export async function eventually(check: () => boolean, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return check();
}

/** How many file descriptors process `pid` has open, to prove a cancelled call leaked none. */
export function openDescriptorCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
