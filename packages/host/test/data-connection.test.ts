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
