// The client's connection: through the hybrid-vsock stand-in to the real agent, waiting
// for an agent that comes up late, errors that say why, one shared HTTP/2 connection,
// and a hung VM noticed by keepalive.
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type AgentProcess,
  type HybridVsockEndpoint,
  startAgent,
  startCCoreLegacyAgent,
  startHybridVsockEndpoint,
} from "@guestkit/testkit";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGuestClient, type GuestClient } from "../src/guest-client.js";
import { Code } from "../src/guest-error.js";
import { openDialBridge } from "../src/transport/dial-bridge.js";
import { rejection, waitFor } from "./guest-fixture.js";

let dir: string;
let endpoint: HybridVsockEndpoint | undefined;
let agent: AgentProcess | undefined;
const clients: GuestClient[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "guestkit-connection-test-"));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
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

describe("waitUntilReady", () => {
  it("waits for an agent that starts late: first tries fail, then it answers", async () => {
    endpoint = await startHybridVsockEndpoint();
    // The port is routed to a socket nobody listens on yet, as in a booting guest.
    const socketPath = join(dir, "agent.sock");
    endpoint.register(2222, socketPath);
    const guest = client(endpoint.target());
    const ready = guest.waitUntilReady({ timeoutMs: 25_000 });
    await waitFor(() => (endpoint?.stats().accepted ?? 0) >= 3);
    agent = await startAgent({ socketPath });
    await ready;
    const stats = endpoint.stats();
    expect(stats.accepted).toBeGreaterThanOrEqual(3);
    // Failed attempts leave nothing behind that reconnects on its own.
    expect(stats.joined).toBe(1);
    expect(stats.open).toBe(1);
    const result = await guest.run(["echo", "up"]);
    expect(result.stdout).toBe("up\n");
  });

  it("gives up at its timeout with the reason of the last failure", async () => {
    endpoint = await startHybridVsockEndpoint();
    const guest = client(endpoint.target(3333));
    const error = await rejection(guest.waitUntilReady({ timeoutMs: 400 }));
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.reason).toBe("no-listener");
    expect(error.message).toContain("not ready within 400 ms");
    expect(error.message).toContain("no agent listening on port 3333");
  });

  it("stops waiting on abort", async () => {
    endpoint = await startHybridVsockEndpoint();
    const guest = client(endpoint.target());
    const controller = new AbortController();
    const waiting = guest.waitUntilReady({ timeoutMs: 60_000, signal: controller.signal });
    await waitFor(() => (endpoint?.stats().accepted ?? 0) >= 2);
    controller.abort();
    const error = await rejection(waiting);
    expect(error.code).toBe(Code.CANCELLED);
  });
});

describe("reaching the agent", () => {
  it("keeps agent bytes that arrive in the same read as the OK line (real gRPC over it)", async () => {
    // An HTTP/2 server that speaks first (C-core sends its SETTINGS at once; guestkit's
    // agent waits for the client's first bytes, to tell a data connection from HTTP/2).
    const legacy = await startCCoreLegacyAgent();
    try {
      endpoint = await startHybridVsockEndpoint({ coalesceOkWithFirstBytes: true });
      endpoint.register(2222, legacy.socketPath);
      const guest = client(endpoint.target());
      const result = await guest.run(["echo", "coalesced"]);
      expect(result.stdout).toBe("coalesced\n");
    } finally {
      await legacy.stop();
    }
  });

  it("a call to a port nobody listens on fails with a clear error, without waiting for timeouts", async () => {
    endpoint = await startHybridVsockEndpoint();
    const target = endpoint.target(4444);
    const guest = client(target, { handshakeTimeoutMs: 120_000 });
    const exec = guest.exec(["true"]);
    const error = await rejection(exec.exit);
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.reason).toBe("no-listener");
    expect(error.message).toContain("no agent listening on port 4444");
    await expect(exec.started).rejects.toBe(error);
    const statError = await rejection(guest.stat("/"));
    expect(statError.reason).toBe("no-listener");
  });

  it("a missing socket file says so", async () => {
    const guest = client(`hvsock:${join(dir, "nothing.vsock")}`);
    const error = await rejection(guest.stat("/"));
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.reason).toBe("no-socket");
    expect(error.message).toContain("no such socket");
  });

  it("a VMM that never answers is a handshake timeout", async () => {
    endpoint = await startHybridVsockEndpoint();
    endpoint.fault = "never-answer";
    const guest = client(endpoint.target(), { handshakeTimeoutMs: 300 });
    const error = await rejection(guest.stat("/"));
    expect(error.reason).toBe("handshake-timeout");
  });

  it("something that is not a gRPC server behind the port is reported as such", async () => {
    endpoint = await startHybridVsockEndpoint();
    const { createServer } = await import("node:net");
    const notGrpc = createServer((socket) => socket.end("SSH-2.0-OpenSSH\r\n"));
    const path = join(dir, "not-grpc.sock");
    await new Promise<void>((resolve) => notGrpc.listen(path, resolve));
    try {
      endpoint.register(2222, path);
      const error = await rejection(client(endpoint.target()).stat("/"));
      expect(error.code).toBe(Code.UNAVAILABLE);
      expect(error.reason).toBe("connection-failed");
    } finally {
      await new Promise((resolve) => notGrpc.close(resolve));
    }
  });

  it("connectTimeoutMs lets a call wait for an agent that comes up late", async () => {
    endpoint = await startHybridVsockEndpoint();
    const socketPath = join(dir, "agent.sock");
    endpoint.register(2222, socketPath);
    const guest = client(endpoint.target(), { connectTimeoutMs: 25_000 });
    const marker = join(dir, "ran");
    const result = guest.run(["sh", "-c", `echo once >> ${marker}; echo done`]);
    await waitFor(() => (endpoint?.stats().accepted ?? 0) >= 3);
    agent = await startAgent({ socketPath });
    expect((await result).stdout).toBe("done\n");
    // Only connecting was retried: the command ran exactly once.
    expect(await readFile(marker, "utf8")).toBe("once\n");
  });

  it("plain unix targets work the same", async () => {
    agent = await startAgent();
    const result = await client(`unix:${agent.socketPath}`).run(["echo", "direct"]);
    expect(result.stdout).toBe("direct\n");
  });

  it("a token goes with every call; without it the agent refuses", async () => {
    const tokenFile = join(dir, "token");
    await writeFile(tokenFile, "s3cret\n", { mode: 0o600 });
    agent = await startAgent({ args: ["--token-file", tokenFile] });
    const target = `unix:${agent.socketPath}`;
    const withToken = client(target, { token: "s3cret" });
    expect((await withToken.run(["echo", "let in"])).stdout).toBe("let in\n");
    expect(await withToken.stat("/")).toMatchObject({ exists: true, type: "directory" });
    await withToken.waitUntilReady({ timeoutMs: 5000 });
    const error = await rejection(client(target).stat("/"));
    expect(error.code).toBe(Code.UNAUTHENTICATED);
    expect(error.reason).toBe("unauthenticated");
  });

  it("a closed client refuses new calls with reason closed", async () => {
    agent = await startAgent();
    const guest = client(`unix:${agent.socketPath}`);
    await guest.close();
    const error = await rejection(guest.stat("/"));
    expect(error.reason).toBe("closed");
  });
});

describe("one connection", () => {
  it("hundreds of concurrent execs share one HTTP/2 connection", async () => {
    agent = await startAgent();
    endpoint = await startHybridVsockEndpoint();
    endpoint.register(2222, agent.socketPath);
    const guest = client(endpoint.target());
    const count = 300;
    const results = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        guest.run(["sh", "-c", `echo out-${i}; echo err-${i} >&2; exit $((${i} % 7))`]),
      ),
    );
    results.forEach((result, i) => {
      expect(result.stdout).toBe(`out-${i}\n`);
      expect(result.stderr).toBe(`err-${i}\n`);
      expect(result.exit.code).toBe(i % 7);
    });
    expect(endpoint.stats().joined).toBe(1);
    expect(endpoint.stats().open).toBe(1);
    // Hundreds of process starts on a 2-core machine shared with other tests.
  }, 120_000);

  it("a hung VM fails running calls through keepalive, and the command is not re-run", async () => {
    agent = await startAgent();
    endpoint = await startHybridVsockEndpoint();
    endpoint.register(2222, agent.socketPath);
    const guest = client(endpoint.target(), { keepaliveMs: 300, keepaliveTimeoutMs: 300 });
    const marker = join(dir, "ran");
    const exec = guest.exec(["sh", "-c", `echo once >> ${marker}; exec sleep 60`]);
    await exec.started;
    endpoint.freeze();
    const error = await rejection(exec.exit);
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.reason).toBe("connection-lost");
    expect(await readFile(marker, "utf8")).toBe("once\n");
  });

  it("reconnects with a fresh connection after the old one died", async () => {
    agent = await startAgent();
    const path = join(dir, "vm.vsock");
    endpoint = await startHybridVsockEndpoint({ path });
    endpoint.register(2222, agent.socketPath);
    const guest = client(endpoint.target());
    expect((await guest.run(["echo", "1"])).stdout).toBe("1\n");
    const running = guest.exec(["sleep", "60"]);
    await running.started;
    // The VMM goes away (a VM restart): the running call learns it...
    await endpoint.close();
    expect((await rejection(running.exit)).reason).toBe("connection-lost");
    // ...and the next call dials afresh.
    endpoint = await startHybridVsockEndpoint({ path });
    endpoint.register(2222, agent.socketPath);
    const again = await guest.run(["echo", "2"], { connectTimeoutMs: 10_000 });
    expect(again.stdout).toBe("2\n");
    expect(endpoint.stats().joined).toBe(1);
  });
});

describe("the dial bridge", () => {
  it("lives in a private directory and removes it on close", async () => {
    const bridge = await openDialBridge(() => Promise.reject(new Error("not used")));
    const mode = (await stat(dirname(bridge.path))).mode & 0o777;
    expect(mode).toBe(0o700);
    await bridge.close();
    await expect(stat(dirname(bridge.path))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it.each([
    ["process.exit()", "process.exit(0);"],
    ["an uncaught exception", "throw new Error('boom');"],
  ])("is removed when a program ends by %s without closing its client", async (_how, ending) => {
    // Only vsock targets use the bridge, and vsock cannot be dialed here: open one directly.
    const bridgeModule = fileURLToPath(new URL("../dist/transport/dial-bridge.js", import.meta.url));
    const script = `
      import { openDialBridge } from ${JSON.stringify(bridgeModule)};
      await openDialBridge(() => Promise.reject(new Error("not used")));
      ${ending}
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, TMPDIR: dir },
      stdio: "ignore",
    });
    await new Promise((resolve) => child.once("exit", resolve));
    expect((await readdir(dir)).filter((name) => name.startsWith("guestkit-bridge-"))).toEqual([]);
  });
});
