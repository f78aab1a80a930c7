// The grpc-js connector hook (internal API) on real connections: a grpc-js release that
// stops calling it, or calls it differently, fails here first. And the client's direct
// paths: unix, tcp and hvsock targets reach the agent with no local bridge in between.
import { spawnSync } from "node:child_process";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { GuestServiceClient, StatPathRequestSchema, type StatPathResponse } from "@guestkit/protocol";
import {
  type AgentProcess,
  type HybridVsockEndpoint,
  startAgent,
  startCCoreLegacyAgent,
  startHybridVsockEndpoint,
} from "@guestkit/testkit";
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { createGuestClient, type GuestClient } from "../src/guest-client.js";
import { Code } from "../src/guest-error.js";
import { createConnectorCredentials } from "../src/transport/grpc-connector.js";
import { hybridVsockHandshake } from "../src/transport/hybrid-vsock-handshake.js";
import { rejection } from "./guest-fixture.js";

let dir: string;
let endpoint: HybridVsockEndpoint | undefined;
let agent: AgentProcess | undefined;
const clients: GuestClient[] = [];
const channels: grpc.Channel[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "guestkit-connector-test-"));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  for (const channel of channels.splice(0)) channel.close();
  await endpoint?.close();
  endpoint = undefined;
  await agent?.stop();
  agent = undefined;
  await rm(dir, { recursive: true, force: true });
});

function client(target: string, options: Parameters<typeof createGuestClient>[1] = {}): GuestClient {
  const made = createGuestClient(target, options);
  clients.push(made);
  return made;
}

function statRoot(guest: GuestServiceClient): Promise<StatPathResponse> {
  return new Promise((resolve, reject) => {
    guest.statPath(
      create(StatPathRequestSchema, { path: "/" }),
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (error, value) => (error || !value ? reject(error) : resolve(value)),
    );
  });
}

// Runs `body` with os.tmpdir() pointing at a fresh dir, and returns what was created there.
async function tempEntriesDuring(body: () => Promise<void>): Promise<string[]> {
  const scratch = await mkdtemp(join(dir, "tmp-"));
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = scratch;
  try {
    await body();
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
  return readdir(scratch);
}

// A loopback TCP port nobody listens on (the kernel's pick, closed again).
async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return address.port;
}

describe("the grpc-js connector hook", () => {
  it("runs the hybrid-vsock handshake on the socket grpc-js opened, keeping bytes sent with OK", async () => {
    // A server that speaks first (C-core sends its SETTINGS at once; guestkit's agent waits
    // for the client's first bytes, to tell a data connection from HTTP/2).
    const legacy = await startCCoreLegacyAgent();
    onTestFinished(() => legacy.stop().then(() => undefined));
    endpoint = await startHybridVsockEndpoint({ coalesceOkWithFirstBytes: true });
    endpoint.register(2222, legacy.socketPath);
    const prepared: { hostPort: number; remote: string }[] = [];
    const credentials = createConnectorCredentials(async (socket: Socket) => {
      const { hostPort } = await hybridVsockHandshake(socket, 2222, { timeoutMs: 5000 });
      prepared.push({ hostPort, remote: socket.remoteAddress ?? "" });
      return socket;
    });
    const channel = new grpc.Channel(`unix:${endpoint.path}`, credentials, {});
    channels.push(channel);
    const guest = new GuestServiceClient("hook", credentials, { channelOverride: channel });
    const response = await statRoot(guest);
    expect(response.exists).toBe(true);
    // The hook ran once, on a real connection, and saw the VMM's OK line.
    expect(prepared).toHaveLength(1);
    expect(prepared[0]?.hostPort).toBeGreaterThan(0);
    expect(endpoint.stats().lines).toEqual(["CONNECT 2222"]);
    expect(endpoint.stats().joined).toBe(1);
  });

  it("a rejection from the hook fails the connection attempt", async () => {
    agent = await startAgent();
    const credentials = createConnectorCredentials(async (socket: Socket) => {
      socket.destroy();
      throw new Error("refused by the hook");
    });
    const channel = new grpc.Channel(`unix:${agent.socketPath}`, credentials, {
      "grpc.initial_reconnect_backoff_ms": 60_000,
    });
    channels.push(channel);
    const guest = new GuestServiceClient("hook", credentials, { channelOverride: channel });
    const error = (await statRoot(guest).catch((caught: unknown) => caught)) as grpc.ServiceError;
    expect(error.code).toBe(Code.UNAVAILABLE);
  });
});

describe("direct connections (no bridge)", () => {
  it("unix and hvsock targets open no bridge", async () => {
    agent = await startAgent();
    endpoint = await startHybridVsockEndpoint();
    endpoint.register(2222, agent.socketPath);
    const target = endpoint.target();
    const created = await tempEntriesDuring(async () => {
      expect((await client(`unix:${agent?.socketPath}`).run(["echo", "unix"])).stdout).toBe("unix\n");
      expect((await client(target).run(["echo", "hvsock"])).stdout).toBe("hvsock\n");
    });
    expect(created.filter((name) => name.startsWith("guestkit-bridge-"))).toEqual([]);
    expect(endpoint.stats().lines).toEqual(["CONNECT 2222"]);
  });

  it("tcp targets reach the agent, with the token every TCP listener requires", async () => {
    const port = await freeTcpPort();
    const tokenFile = join(dir, "token");
    await writeFile(tokenFile, "s3cret\n", { mode: 0o600 });
    agent = await startAgent({ args: ["--listen", `tcp:127.0.0.1:${port}`, "--token-file", tokenFile] });
    const guest = client(`tcp:127.0.0.1:${port}`, { token: "s3cret", connectTimeoutMs: 5000 });
    expect((await guest.run(["echo", "tcp"])).stdout).toBe("tcp\n");
    expect(await guest.stat("/")).toMatchObject({ exists: true, type: "directory" });
  });

  it("a unix socket file nobody listens on is refused, with the reason", async () => {
    const path = join(dir, "stale.sock");
    // A listener killed outright leaves its socket file: what an agent that died leaves behind.
    const script = `require("node:net").createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, "SIGKILL"))`;
    spawnSync(process.execPath, ["-e", script], { stdio: "ignore" });
    expect((await stat(path)).isSocket()).toBe(true);
    const error = await rejection(client(`unix:${path}`).stat("/"));
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.reason).toBe("refused");
    expect(error.message).toBe(`unix:${path}: connection refused`);
  });

  it("a missing unix socket says so", async () => {
    const path = join(dir, "none.sock");
    const error = await rejection(client(`unix:${path}`).stat("/"));
    expect(error.reason).toBe("no-socket");
    expect(error.message).toBe(`unix:${path}: no such socket`);
  });

  it("a tcp port nobody listens on is refused", async () => {
    const error = await rejection(client(`tcp:127.0.0.1:${await freeTcpPort()}`).stat("/"));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("connection refused");
  });

  it("retries a direct unix target until the agent comes up, then runs the call once", async () => {
    const socketPath = join(dir, "late.sock");
    const guest = client(`unix:${socketPath}`, { connectTimeoutMs: 25_000 });
    const result = guest.run(["echo", "late"]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    agent = await startAgent({ socketPath });
    expect((await result).stdout).toBe("late\n");
  });

  it("reconnects a unix target with a fresh connection after the agent restarted", async () => {
    const socketPath = join(dir, "restart.sock");
    agent = await startAgent({ socketPath });
    const guest = client(`unix:${socketPath}`);
    expect((await guest.run(["echo", "1"])).stdout).toBe("1\n");
    const running = guest.exec(["sleep", "60"]);
    await running.started;
    await agent.stop();
    // A stopping agent may end the command and report it before it goes: either way is fine here.
    await running.exit.catch(() => undefined);
    agent = await startAgent({ socketPath });
    expect((await guest.run(["echo", "2"], { connectTimeoutMs: 10_000 })).stdout).toBe("2\n");
  });
});
