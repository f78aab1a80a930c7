// dial() and the hybrid-vsock handshake against real Unix sockets: the Cloud Hypervisor
// stand-in from testkit, and raw servers where a test needs exact bytes on the wire.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type HybridVsockEndpoint, startHybridVsockEndpoint } from "@guestkit/testkit";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Code } from "../src/guest-error.js";
import { dialWithRetry } from "../src/transport/connect-retry.js";
import { dial } from "../src/transport/dial.js";
import { hybridVsockHandshake } from "../src/transport/hybrid-vsock-handshake.js";
import { parseTarget } from "../src/transport/target.js";
import { rejection } from "./guest-fixture.js";

let dir: string;
let endpoint: HybridVsockEndpoint | undefined;
const servers: Server[] = [];
const sockets: Socket[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "guestkit-dial-test-"));
});

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  await endpoint?.close();
  endpoint = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** A Unix server in the test dir; `onConnection` sees every accepted socket. */
async function listen(name: string, onConnection: (socket: Socket) => void): Promise<string> {
  const path = join(dir, name);
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => {});
    onConnection(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return path;
}

/** An "agent" that echoes what it gets, prefixed so the test sees it went through. */
function echoAgent(): Promise<string> {
  return listen("agent.sock", (socket) => socket.on("data", (data: Buffer) => socket.write(`echo:${data}`)));
}

function read(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.once("data", (data: Buffer) => resolve(data.toString()));
    socket.once("error", reject);
    socket.resume();
  });
}

describe("the hybrid-vsock handshake", () => {
  it("sends the CONNECT line in one write and keeps guest bytes that come with the OK line", async () => {
    const firstReads: string[] = [];
    const path = await listen("vm.vsock", (socket) => {
      socket.once("data", (data: Buffer) => {
        firstReads.push(data.toString("latin1"));
        // The OK line and the guest's first bytes in ONE write, so the client reads them together.
        socket.write("OK 1073741824\nHELLO-FROM-GUEST");
        socket.on("data", (more: Buffer) => socket.write(`echo:${more}`));
      });
    });
    const socket = connect({ path });
    sockets.push(socket);
    await new Promise((resolve) => socket.once("connect", resolve));
    let writes = 0;
    const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
    socket.write = ((...args: unknown[]) => {
      writes += 1;
      return write(...args);
    }) as typeof socket.write;

    const result = await hybridVsockHandshake(socket, 2222, { timeoutMs: 5000 });

    expect(result.hostPort).toBe(1073741824);
    expect(writes).toBe(1);
    expect(firstReads).toEqual(["CONNECT 2222\n"]);
    expect(await read(socket)).toBe("HELLO-FROM-GUEST");
    socket.write("ping");
    expect(await read(socket)).toBe("echo:ping");
  });

  it("through dial(): the socket starts with the bytes that came with OK", async () => {
    const path = await listen("vm.vsock", (socket) => {
      socket.once("data", () => {
        socket.write("OK 1073741825\nfirst-bytes");
        socket.on("data", (more: Buffer) => socket.write(`echo:${more}`));
      });
    });
    const socket = await dial(parseTarget(`hvsock:${path}:1234`));
    sockets.push(socket);
    expect(await read(socket)).toBe("first-bytes");
    socket.write("x");
    expect(await read(socket)).toBe("echo:x");
  });

  it("reaches an agent through the Cloud Hypervisor stand-in", async () => {
    endpoint = await startHybridVsockEndpoint();
    endpoint.register(2222, await echoAgent());
    const socket = await dial(parseTarget(endpoint.target(2222)));
    sockets.push(socket);
    socket.write("hello");
    expect(await read(socket)).toBe("echo:hello");
    expect(endpoint.stats().lines).toEqual(["CONNECT 2222"]);
  });

  it("works with Firecracker's strictness (the whole line on the first read)", async () => {
    endpoint = await startHybridVsockEndpoint({ requireLineInOneRead: true });
    endpoint.register(52, await echoAgent());
    for (let i = 0; i < 20; i += 1) {
      const socket = await dial(parseTarget(endpoint.target(52)));
      sockets.push(socket);
      socket.write(`n${i}`);
      expect(await read(socket)).toBe(`echo:n${i}`);
    }
  });

  it("a port nobody listens on is a clear error, without waiting for the timeout", async () => {
    endpoint = await startHybridVsockEndpoint();
    const target = endpoint.target(4000);
    const error = await rejection(dial(parseTarget(target), { handshakeTimeoutMs: 120_000 }));
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.reason).toBe("no-listener");
    expect(error.message).toContain("no agent listening on port 4000");
    expect(error.message).toContain(target);
  });

  it("a missing socket file is a clear error", async () => {
    const target = `hvsock:${join(dir, "missing.vsock")}:2222`;
    const error = await rejection(dial(parseTarget(target)));
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.reason).toBe("no-socket");
    expect(error.message).toBe(`${target}: no such socket`);
    expect(errnoOf(error.cause)).toBe("ENOENT");
  });

  it("a VMM that never answers is a handshake timeout", async () => {
    endpoint = await startHybridVsockEndpoint();
    endpoint.fault = "never-answer";
    const error = await rejection(dial(parseTarget(endpoint.target()), { handshakeTimeoutMs: 300 }));
    expect(error.code).toBe(Code.UNAVAILABLE);
    expect(error.reason).toBe("handshake-timeout");
    expect(error.message).toContain("no answer to CONNECT 2222 within 300 ms");
  });

  it("garbage instead of OK is a bad handshake, quoted", async () => {
    endpoint = await startHybridVsockEndpoint();
    endpoint.fault = "garbage";
    const error = await rejection(dial(parseTarget(endpoint.target())));
    expect(error.reason).toBe("bad-handshake");
    expect(error.message).toContain('"ERR no such thing\\n"');
  });

  it("a long answer without a newline is a bad handshake, not an unbounded read", async () => {
    const path = await listen("vm.vsock", (socket) => socket.once("data", () => socket.write("x".repeat(10_000))));
    const error = await rejection(dial(parseTarget(`hvsock:${path}`)));
    expect(error.reason).toBe("bad-handshake");
  });

  it("a close in the middle of the OK line means no agent", async () => {
    endpoint = await startHybridVsockEndpoint();
    endpoint.fault = "close-mid-handshake";
    const error = await rejection(dial(parseTarget(endpoint.target())));
    expect(error.reason).toBe("no-listener");
  });

  it("an abort during the handshake cancels, after the whole line went out", async () => {
    endpoint = await startHybridVsockEndpoint();
    endpoint.fault = "never-answer";
    const controller = new AbortController();
    const pending = dial(parseTarget(endpoint.target(77)), { signal: controller.signal });
    await waitFor(() => endpoint?.stats().lines.length === 1);
    controller.abort();
    const error = await rejection(pending);
    expect(error.code).toBe(Code.CANCELLED);
    expect(error.reason).toBe("cancelled");
    expect(endpoint.stats().lines).toEqual(["CONNECT 77"]);
  });

  it("plain unix targets dial too, and a refused socket says so", async () => {
    const agentPath = await echoAgent();
    const socket = await dial(parseTarget(`unix:${agentPath}`));
    sockets.push(socket);
    socket.write("u");
    expect(await read(socket)).toBe("echo:u");
    // A path that is not a listening socket: connect() refuses it.
    const stale = join(dir, "stale.sock");
    await writeFile(stale, "");
    const error = await rejection(dial(parseTarget(`unix:${stale}`)));
    expect(error.reason).toBe("refused");
  });
});

describe("dialWithRetry", () => {
  it("waits for an agent that starts late, with a fresh connection each try", async () => {
    endpoint = await startHybridVsockEndpoint();
    const agentPath = await echoAgent();
    const pending = dialWithRetry(parseTarget(endpoint.target()), { connectTimeoutMs: 20_000 });
    await waitFor(() => (endpoint?.stats().accepted ?? 0) >= 3);
    endpoint.register(2222, agentPath);
    const socket = await pending;
    sockets.push(socket);
    socket.write("late");
    expect(await read(socket)).toBe("echo:late");
    const stats = endpoint.stats();
    // At least the two that failed before the port was registered, each a new connection.
    expect(stats.accepted).toBeGreaterThanOrEqual(3);
    expect(stats.lines.length).toBe(stats.accepted);
    expect(stats.joined).toBe(1);
  });

  it("gives up at the deadline with the last reason", async () => {
    endpoint = await startHybridVsockEndpoint();
    const error = await rejection(dialWithRetry(parseTarget(endpoint.target()), { connectTimeoutMs: 300 }));
    expect(error.reason).toBe("no-listener");
    expect(error.message).toMatch(/gave up after \d+ attempts/);
  });

  it("does not retry what retrying cannot fix", async () => {
    endpoint = await startHybridVsockEndpoint();
    endpoint.fault = "garbage";
    const error = await rejection(dialWithRetry(parseTarget(endpoint.target()), { connectTimeoutMs: 20_000 }));
    expect(error.reason).toBe("bad-handshake");
    expect(endpoint.stats().accepted).toBe(1);
  });
});

function errnoOf(error: unknown): string | undefined {
  return (error as { code?: string } | undefined)?.code;
}

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

// The stand-in ends connections as the VMMs do (docs/hybrid-vsock.md, "How a connection
// ends"); tests of data connections rely on it in both directions.
describe("the Cloud Hypervisor stand-in, when a side closes", () => {
  it("hands the host everything the guest wrote before it closed, to a host that reads slowly", async () => {
    const total = 4 * 1024 * 1024;
    const agentPath = await listen("agent.sock", (socket) => {
      // As the agent ends a data connection: the last bytes handed to the kernel, then close.
      socket.end(Buffer.alloc(total, 7), () => socket.destroy());
    });
    endpoint = await startHybridVsockEndpoint();
    endpoint.register(2222, agentPath);
    // A few connections: a stand-in that dropped what it held at the close lost bytes on most.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const socket = await dial(parseTarget(endpoint.target()));
      sockets.push(socket);
      // A pause after every read: when the guest's close comes, the VMM still holds bytes for the host.
      let received = 0;
      socket.on("data", (chunk: Buffer) => {
        received += chunk.length;
        socket.pause();
        setTimeout(() => socket.resume(), 1);
      });
      socket.resume();
      await new Promise((resolve) => socket.once("end", resolve));
      expect(received).toBe(total);
    }
  });

  it("after the host half-closes, drops what the guest sends and closes within 2 s", async () => {
    const agentGot: Buffer[] = [];
    const agentPath = await listen("agent.sock", (socket) => {
      socket.on("data", (chunk: Buffer) => agentGot.push(chunk));
      // The guest answers only once the host has finished sending.
      socket.once("end", () => socket.write("too late"));
    });
    endpoint = await startHybridVsockEndpoint();
    endpoint.register(2222, agentPath);
    const socket = await dial(parseTarget(endpoint.target()));
    sockets.push(socket);
    let hostGot = "";
    socket.on("data", (chunk: Buffer) => {
      hostGot += chunk.toString("latin1");
    });
    socket.resume();
    const started = Date.now();
    socket.end("all of it");
    await new Promise((resolve) => socket.once("close", resolve));
    expect(Date.now() - started).toBeLessThan(3000);
    expect(Buffer.concat(agentGot).toString("latin1")).toBe("all of it");
    expect(hostGot).toBe("");
  });
});
