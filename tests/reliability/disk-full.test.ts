// A full disk in the guest (a 4 MiB tmpfs) during an upload: the failure comes back
// in-band as ENOSPC / RESOURCE_EXHAUSTED, no partial file is left, an existing target
// keeps its old contents, and the agent goes on serving. And the same on the host side:
// a download into a full disk fails with ENOSPC and leaves nothing half-written.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CopyError, createGuestClient, type GuestClient } from "@guestkit/host";
import { type AgentProcess, startAgent } from "@guestkit/testkit";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type AgentLoad, agentLoad, expectServing, expectSettled } from "./support.js";

const RESOURCE_EXHAUSTED = 8;
const MiB = 1024 * 1024;

let agent: AgentProcess;
let client: GuestClient;
let baseline: AgentLoad;
let work: string;
let full: string;

beforeAll(async () => {
  agent = await startAgent();
  client = createGuestClient(`unix:${agent.socketPath}`);
  await expectServing(client);
  baseline = agentLoad(agent);
});

afterAll(async () => {
  await client.close();
  await agent.stop();
});

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-disk-full-"));
  full = join(work, "small");
  await mkdir(full);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", full]);
});

afterEach(async () => {
  execFileSync("umount", [full]);
  await rm(work, { recursive: true, force: true });
});

/** A local file of `size` bytes, every byte `fill`. */
async function localFile(name: string, size: number, fill = 0x61): Promise<string> {
  const path = join(work, name);
  await writeFile(path, Buffer.alloc(size, fill));
  return path;
}

async function copyFailure(promise: Promise<unknown>): Promise<CopyError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(CopyError);
  return error as CopyError;
}

describe("the guest's disk fills during an upload", () => {
  it("a new file: ENOSPC in-band, nothing left behind", async () => {
    const source = await localFile("big", 8 * MiB);
    const error = await copyFailure(client.copyTo(source, join(full, "big")));
    expect(error.reason).toBe("guest-failed");
    expect(error.guestCode).toBe("ENOSPC");
    expect(error.code).toBe(RESOURCE_EXHAUSTED);
    expect(error.message).toMatch(/no space left on device/);
    expect(error.entriesCompleted).toBe(0);
    expect(await readdir(full)).toEqual([]);
    await expectSettled(agent, baseline);
    await expectServing(client);
  });

  it("over an existing file: the old contents stay", async () => {
    await writeFile(join(full, "target"), "old contents");
    const source = await localFile("big", 8 * MiB);
    const error = await copyFailure(client.copyTo(source, join(full, "target")));
    expect(error.guestCode).toBe("ENOSPC");
    expect(await readdir(full)).toEqual(["target"]);
    expect(await readFile(join(full, "target"), "utf8")).toBe("old contents");
    await expectServing(client);
  });

  it("a tree: the files that fit are complete, the one that did not is absent, the error says which", async () => {
    const tree = join(work, "tree");
    await mkdir(tree);
    for (let i = 0; i < 6; i += 1) await writeFile(join(tree, `f${i}`), Buffer.alloc(MiB, 0x30 + i));
    const error = await copyFailure(client.copyTo(tree, join(full, "tree")));
    expect(error.guestCode).toBe("ENOSPC");
    const failed = (error.path ?? "").split("/").pop() as string;
    expect(failed).toMatch(/^f\d$/);
    const landed = await readdir(join(full, "tree"));
    expect(landed).not.toContain(failed);
    expect(landed.filter((name) => name.includes(".guestkit-"))).toEqual([]);
    // The directory plus the complete files.
    expect(error.entriesCompleted).toBe(1 + landed.length);
    for (const name of landed) {
      const contents = await readFile(join(full, "tree", name));
      expect(contents.length).toBe(MiB);
      expect(contents.every((byte) => byte === 0x30 + Number(name.slice(1)))).toBe(true);
    }
    await expectServing(client);
  });

  it("after space is freed, the same upload succeeds", async () => {
    await writeFile(join(full, "filler"), Buffer.alloc(3 * MiB));
    const source = await localFile("two", 2 * MiB, 0x62);
    const error = await copyFailure(client.copyTo(source, join(full, "two")));
    expect(error.guestCode).toBe("ENOSPC");
    await rm(join(full, "filler"));
    const result = await client.copyTo(source, join(full, "two"));
    expect(result.bytes).toBe(2 * MiB);
    expect((await readFile(join(full, "two"))).equals(Buffer.alloc(2 * MiB, 0x62))).toBe(true);
  });
});

describe("the host's disk fills during a download", () => {
  it("local-io ENOSPC, and no half-written file under any name", async () => {
    const source = await localFile("big", 8 * MiB);
    await writeFile(join(full, "big"), "old contents");
    const error = await copyFailure(client.copyFrom(source, join(full, "big")));
    expect(error.reason).toBe("local-io");
    expect(error.errno).toBe("ENOSPC");
    expect(error.code).toBe(RESOURCE_EXHAUSTED);
    expect(await readdir(full)).toEqual(["big"]);
    expect(await readFile(join(full, "big"), "utf8")).toBe("old contents");
    // The agent let go of the file it was sending.
    await expectSettled(agent, baseline);
  });
});
