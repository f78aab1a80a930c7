// Port forwarding into the guest: a real agent (behind the hybrid-vsock stand-in) and
// real TCP servers on this machine, which plays the guest: an HTTP server reached through
// `guestctl port-forward` and the library, 100 connections at once, 32 MiB each way
// checked byte for byte, half-close in each direction, a refused port, the agent's own
// listener refused, and a local side that goes away mid-transfer leaving nothing open in
// the agent.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, get, type Server as HttpServer } from "node:http";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { describeFds, startAgent } from "@guestkit/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGuestClient } from "../src/guest-client.js";
import { GuestError } from "../src/guest-error.js";
import { startCli } from "./cli-support.js";
import { useGuestFixture, waitFor } from "./guest-fixture.js";

const suite = useGuestFixture();
let http: HttpServer;
let httpPort: number;
// Answers with the sha256 of everything it got once the client half-closed, then sends
// `size` bytes of a seeded stream (the size comes first, as a line) and closes.
let hashing: Server;
let hashingPort: number;

const MiB = 1024 * 1024;

beforeAll(async () => {
  http = createHttpServer((request, response) => {
    response.end(`hello from inside, ${request.url}\n`);
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  httpPort = (http.address() as AddressInfo).port;
  hashing = createServer({ allowHalfOpen: true }, (socket) => {
    const hash = createHash("sha256");
    let header = "";
    let size = -1;
    socket.on("data", (data: Buffer) => {
      if (size < 0) {
        header += data.toString("latin1");
        const newline = header.indexOf("\n");
        if (newline < 0) return;
        size = Number(header.slice(0, newline));
        hash.update(Buffer.from(header.slice(newline + 1), "latin1"));
      } else {
        hash.update(data);
      }
    });
    socket.on("end", () => {
      socket.write(`${hash.digest("hex")}\n`);
      socket.end(seeded(size));
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => hashing.listen(0, "127.0.0.1", resolve));
  hashingPort = (hashing.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => http.close(resolve));
  await new Promise((resolve) => hashing.close(resolve));
});

function seeded(size: number): Buffer {
  const out = Buffer.alloc(Math.max(0, size));
  for (let i = 0; i < out.length; i++) out[i] = (i * 31 + (i >> 10)) & 0xff;
  return out;
}

function readAll(stream: Duplex | Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => resolve(Buffer.concat(chunks)));
    stream.on("error", reject);
  });
}

function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path, agent: false }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (text: string) => {
        body += text;
      });
      response.on("end", () => resolve(body));
    }).on("error", reject);
  });
}

// Both ways the bytes can go: on a data connection (the agent offers one) and in-band on
// the call (an agent without it; here the client declines the offer).
describe.each([
  ["on a data connection", true],
  ["in-band", false],
])("forwardPort (library), %s", (_mode, dataConnections) => {
  it("is announced, and carries an HTTP request and its answer", async () => {
    const client = suite.guest.client({ dataConnections });
    expect((await client.capabilities()).has("port-forward")).toBe(true);
    const connection = await client.forwardPort(httpPort);
    connection.end("GET /direct HTTP/1.0\r\nHost: x\r\n\r\n");
    const answer = (await readAll(connection)).toString();
    expect(answer).toMatch(/^HTTP\/1\.[01] 200/);
    expect(answer).toContain("hello from inside, /direct");
  });

  it("moves 32 MiB each way byte for byte, with a half-close in each direction", async () => {
    const client = suite.guest.client({ dataConnections });
    await client.stat("/");
    const connects = suite.guest.endpoint.stats().lines.length;
    const connection = await client.forwardPort(hashingPort);
    // One more connection through the VMM for the data connection, none in-band.
    expect(suite.guest.endpoint.stats().lines.length - connects).toBe(dataConnections ? 1 : 0);
    const upload = randomBytes(32 * MiB);
    const received = readAll(connection);
    connection.write(`${32 * MiB}\n`);
    connection.end(upload);
    const reply = await received;
    const newline = reply.indexOf("\n");
    expect(reply.subarray(0, newline).toString()).toBe(createHash("sha256").update(upload).digest("hex"));
    expect(reply.subarray(newline + 1).equals(seeded(32 * MiB))).toBe(true);
  }, 60_000);

  it("a refused port is a clear error", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const error = await suite.guest
      .client({ dataConnections })
      .forwardPort(port)
      .then(
        () => undefined,
        (caught: unknown) => caught,
      );
    expect(error).toBeInstanceOf(GuestError);
    expect(error).toMatchObject({ reason: "forward-failed" });
    expect((error as GuestError).message).toContain("ECONNREFUSED");
  });

  it("100 concurrent connections through a local listener", async () => {
    const listener = await suite.guest.client({ dataConnections }).listenForward({ localPort: 0, guestPort: httpPort });
    try {
      const bodies = await Promise.all(Array.from({ length: 100 }, (_, i) => httpGet(listener.address.port, `/c${i}`)));
      for (const [i, body] of bodies.entries()) expect(body).toBe(`hello from inside, /c${i}\n`);
    } finally {
      await listener.close();
    }
  }, 60_000);

  it("a local side that goes away mid-transfer leaves nothing open in the agent", async () => {
    const pid = suite.guest.agent.pid;
    const client = suite.guest.client({ dataConnections });
    // Warm up the connection, so that only the forward's own fds come and go.
    await client.run(["true"]);
    const before = describeFds(pid).length;
    const listener = await client.listenForward({ localPort: 0, guestPort: hashingPort });
    try {
      for (let i = 0; i < 5; i++) {
        const local = connect(listener.address.port, "127.0.0.1");
        await new Promise<void>((resolve) => local.once("connect", () => resolve()));
        local.write(`${64 * MiB}\n`);
        local.write(randomBytes(4 * MiB));
        await waitFor(() => describeFds(pid).length > before);
        local.destroy();
      }
      // Bounded by the test's timeout.
      await waitFor(() => describeFds(pid).length <= before);
    } finally {
      await listener.close();
    }
  }, 60_000);
});

describe("the agent's own listener", () => {
  it("cannot be reached through a forward", async () => {
    const dir = await mkdtemp(join(tmpdir(), "guestkit-forward-own-"));
    const tokenFile = join(dir, "token");
    await writeFile(tokenFile, "secret-token\n", { mode: 0o600 });
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const agent = await startAgent({ args: ["--listen", `tcp:127.0.0.1:${port}`, "--token-file", tokenFile] });
    const client = createGuestClient(`unix:${agent.socketPath}`, { token: "secret-token" });
    try {
      const error = await client.forwardPort(port).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toMatchObject({ reason: "forward-failed" });
      expect((error as GuestError).message).toContain("EACCES");
    } finally {
      await client.close();
      await agent.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("guestctl port-forward", () => {
  it("forwards LOCAL:GUEST until Ctrl-C (SIGINT), then exits 0", async () => {
    const cli = startCli(["--target", suite.guest.target, "port-forward", `0:${httpPort}`]);
    await cli.waitForOutput(`-> ${httpPort}\n`);
    const shown = /Forwarding from 127\.0\.0\.1:(\d+) ->/.exec(cli.stdout());
    expect(shown).not.toBeNull();
    const body = await httpGet(Number(shown?.[1]), "/through-guestctl");
    expect(body).toBe("hello from inside, /through-guestctl\n");
    cli.child.kill("SIGINT");
    expect((await cli.result).code).toBe(0);
  }, 30_000);

  it("a bad pair is a usage error", async () => {
    const cli = startCli(["--target", suite.guest.target, "port-forward", "80:70000"]);
    const result = await cli.result;
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("bad port pair");
  });
});
