// Bulk copies move on a data connection beside HTTP/2 (@guestkit/protocol's
// data-connection.ts), and only bulk copies do: the real agent behind a Cloud
// Hypervisor-style hybrid-vsock endpoint, whose connection count shows each data
// connection as one more CONNECT.
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentProcess, type HybridVsockEndpoint, startAgent, startHybridVsockEndpoint } from "@guestkit/testkit";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CopyError } from "../src/copy/copy-error.js";
import { createGuestClient, type GuestClient } from "../src/guest-client.js";

let agent: AgentProcess;
let endpoint: HybridVsockEndpoint;
let client: GuestClient;
let work: string;

beforeAll(async () => {
  agent = await startAgent();
  endpoint = await startHybridVsockEndpoint();
  endpoint.register(2222, agent.socketPath);
  client = createGuestClient(endpoint.target());
  await client.stat("/");
});

afterAll(async () => {
  await client.close();
  await endpoint.close();
  await agent.stop();
});

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-data-connection-"));
  return () => rm(work, { recursive: true, force: true });
});

// The CONNECTs a step made: the client's own connection is already open.
async function connectionsFor(step: () => Promise<unknown>): Promise<number> {
  const before = endpoint.stats().lines.length;
  await step();
  return endpoint.stats().lines.length - before;
}

function tree(root: string): void {
  mkdirSync(join(root, "sub"), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(root, "sub", `f${i}`), `${i}\n`);
  writeFileSync(join(root, "big"), randomBytes(2 * 1024 * 1024 + 7));
}

describe("data connections", () => {
  it("a big file goes to the guest and back on one data connection each way, byte for byte", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 11);
    writeFileSync(join(work, "big"), data);
    expect(await connectionsFor(() => client.copyTo(join(work, "big"), join(work, "up")))).toBe(1);
    expect(readFileSync(join(work, "up")).equals(data)).toBe(true);
    expect(await connectionsFor(() => client.copyFrom(join(work, "up"), join(work, "down")))).toBe(1);
    expect(readFileSync(join(work, "down")).equals(data)).toBe(true);
    expect(endpoint.stats().lines.every((line) => line === "CONNECT 2222")).toBe(true);
  });

  it("a tree goes both ways on one data connection each, whole", async () => {
    tree(join(work, "tree"));
    const up = await connectionsFor(async () => {
      expect(await client.copyTo(join(work, "tree"), join(work, "up"))).toMatchObject({ entries: 23 });
    });
    expect(up).toBe(1);
    const down = await connectionsFor(async () => {
      expect(await client.copyFrom(join(work, "up"), join(work, "down"))).toMatchObject({ entries: 23 });
    });
    expect(down).toBe(1);
    expect(readFileSync(join(work, "down", "big")).equals(readFileSync(join(work, "tree", "big")))).toBe(true);
    expect(readFileSync(join(work, "down", "sub", "f19"), "utf8")).toBe("19\n");
  });

  it("a small file stays on the call: a second connection would cost more than it saves", async () => {
    writeFileSync(join(work, "small"), "hello\n");
    expect(await connectionsFor(() => client.copyTo(join(work, "small"), join(work, "up")))).toBe(0);
    expect(await connectionsFor(() => client.copyFrom(join(work, "up"), join(work, "down")))).toBe(0);
    expect(readFileSync(join(work, "down"), "utf8")).toBe("hello\n");
  });

  it("an upload aborted mid-file leaves no file and no temp file, and its data connection is closed", async () => {
    writeFileSync(join(work, "big"), randomBytes(64 * 1024 * 1024));
    const open = endpoint.stats().open;
    const controller = new AbortController();
    const copying = client.copyTo(join(work, "big"), join(work, "dest"), {
      signal: controller.signal,
      onProgress: ({ bytes }) => {
        if (bytes > 4 * 1024 * 1024) controller.abort();
      },
    });
    const error = await copying.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(CopyError);
    expect((error as CopyError).reason).toBe("cancelled");
    await expect.poll(() => readdirSync(work).sort(), { timeout: 5000 }).toEqual(["big"]);
    await expect.poll(() => endpoint.stats().open, { timeout: 5000 }).toBe(open);
  });
});

// Exec takes its data connection only once a command's output passed 1 MiB on the call.
describe("data connections for a command's output", () => {
  /** What `seq 1 N` prints. */
  const seq = (n: number) => Array.from({ length: n }, (_, i) => `${i + 1}\n`).join("");

  it("a short command stays on the call", async () => {
    let result: Awaited<ReturnType<GuestClient["run"]>> | undefined;
    expect(
      await connectionsFor(async () => {
        result = await client.run(["sh", "-c", "seq 1 1000; seq 1 10 >&2"]);
      }),
    ).toBe(0);
    expect(result?.stdout).toBe(seq(1000));
    expect(result?.stderr).toBe(seq(10));
  });

  it("a command with a lot of output moves it on one data connection, in order, stdout and stderr apart", async () => {
    let result: Awaited<ReturnType<GuestClient["run"]>> | undefined;
    const script = "seq 1 400000; seq 1 300000 >&2; seq 1 200000; echo done >&2";
    expect(
      await connectionsFor(async () => {
        result = await client.run(["sh", "-c", script], { maxOutputBytes: 64 * 1024 * 1024 });
      }),
    ).toBe(1);
    expect(result?.exit.code).toBe(0);
    expect(result?.outputCapped).toBe(false);
    expect(result?.stdout).toBe(seq(400000) + seq(200000));
    expect(result?.stderr).toBe(`${seq(300000)}done\n`);
  });

  it("the exit waits for the last byte: a command that ends right after 32 MiB loses none of it", async () => {
    const size = 32 * 1024 * 1024;
    const handle = client.exec(["head", "-c", String(size), "/dev/zero"]);
    let received = 0;
    for await (const { data } of handle) received += data.byteLength;
    expect(received).toBe(size);
    expect((await handle.exit).code).toBe(0);
  });

  it("a reader that stops holds the command back instead of filling memory", async () => {
    const handle = client.exec(["head", "-c", String(256 * 1024 * 1024), "/dev/zero"]);
    const iterator = handle[Symbol.asyncIterator]();
    let received = 0;
    while (received < 4 * 1024 * 1024) received += (await iterator.next()).value.data.byteLength;
    const before = process.memoryUsage().arrayBuffers;
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Stopped: a few MiB in flight at most, not the 256 the command would write.
    expect((process.memoryUsage().arrayBuffers - before) / 1024 / 1024).toBeLessThan(32);
    handle.kill("KILL");
    await iterator.return?.();
    expect((await handle.exit).signal).toBe("SIGKILL");
  });

  it("a reader that stalls longer than a copy's ticket lasts still gets all of it, and the exit", async () => {
    const size = 8 * 1024 * 1024;
    const handle = client.exec(["head", "-c", String(size), "/dev/zero"]);
    // Iterating, but not reading yet: the queue fills at 1 MiB, just where the agent
    // sends the ticket, and the call pauses with the ticket still unread on it.
    const iterator = handle[Symbol.asyncIterator]();
    await new Promise((resolve) => setTimeout(resolve, 6000));
    let received = 0;
    for (let step = await iterator.next(); !step.done; step = await iterator.next()) {
      received += step.value.data.byteLength;
    }
    expect(received).toBe(size);
    expect((await handle.exit).code).toBe(0);
  }, 20_000);

  it("in a terminal too", async () => {
    const handle = client.exec(["sh", "-c", "seq 1 300000"], { tty: true });
    let text = "";
    for await (const { data } of handle) text += Buffer.from(data).toString("latin1");
    expect((await handle.exit).code).toBe(0);
    expect(text).toBe(seq(300000).replaceAll("\n", "\r\n"));
  });
});
