// The safe open and read of a file the walk found: swaps since the walk are refused,
// shrinking and changing files are told apart, synthetic files are read to EOF.
import { execFileSync } from "node:child_process";
import { mkdirSync, renameSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { appendFile, open } from "node:fs/promises";
import { join } from "node:path";
import { CHUNK_SIZE } from "@guestkit/protocol";
import { describe, expect, it } from "vitest";
import { readSource, type Source, streamSource } from "../src/source-file.js";
import { createSyntheticFileCheck, readWholeFile } from "../src/synthetic-files.js";
import { type WalkEntry, walkTree } from "../src/tree-walk.js";
import { collect, openDescriptors, tempDir } from "./send-support.js";

/** The walk's entry for `name` under `root`. */
async function entryOf(root: string, name: string, followLinks = false): Promise<WalkEntry> {
  const items = await collect(walkTree(root, { followLinks, checkLocation: true }));
  const entry = items.find((item) => item.relativePath === name);
  if (entry?.kind !== "entry") throw new Error(`no entry ${name}`);
  return entry;
}

function rootWith(files: Record<string, string | Buffer>): string {
  const root = join(tempDir(), "root");
  mkdirSync(root);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(root, name), content);
  return root;
}

async function streamAll(source: Source) {
  if (source.kind !== "opened") throw new Error(`not opened: ${source.kind}`);
  const chunks: Uint8Array[] = [];
  const outcome = await streamSource(source, async (chunk) => void chunks.push(chunk));
  return { outcome, data: Buffer.concat(chunks) };
}

describe("readSource", () => {
  it("reads a small file whole and opens a larger one for streaming", async () => {
    const big = Buffer.alloc(CHUNK_SIZE * 2 + 5, 7);
    const root = rootWith({ small: "hello", big });
    const small = await readSource(await entryOf(root, "small"), createSyntheticFileCheck());
    expect(small).toMatchObject({ kind: "whole", size: 5n, changed: false });
    expect(small.kind === "whole" && small.data.toString()).toBe("hello");
    const entry = await entryOf(root, "big");
    const before = openDescriptors();
    const streamed = await streamAll(await readSource(entry, createSyntheticFileCheck()));
    expect(streamed.outcome).toEqual({ kind: "complete", changed: false });
    expect(streamed.data.equals(big)).toBe(true);
    // The handle is closed once the data is read.
    expect(openDescriptors()).toBe(before);
  });

  it("refuses a file swapped since the walk: another file, a symlink, a FIFO", async () => {
    const root = rootWith({ file: "x", other: "y", linked: "z", piped: "p" });
    const check = createSyntheticFileCheck();
    const file = await entryOf(root, "file");
    const linked = await entryOf(root, "linked");
    const piped = await entryOf(root, "piped");
    renameSync(join(root, "other"), join(root, "file"));
    unlinkSync(join(root, "linked"));
    symlinkSync("/etc/passwd", join(root, "linked"));
    unlinkSync(join(root, "piped"));
    execFileSync("mkfifo", [join(root, "piped")]);
    expect(await readSource(file, check)).toMatchObject({ kind: "refused", code: "CHANGED" });
    expect(await readSource(linked, check)).toMatchObject({ kind: "refused", code: "CHANGED" });
    // O_NONBLOCK: the open of a FIFO returns at once, and the fstat tells it is not the file.
    expect(await readSource(piped, check)).toMatchObject({ kind: "refused", code: "CHANGED" });
  });

  it("refuses a file reached through a directory swapped for a symlink since the walk", async () => {
    const root = join(tempDir(), "root");
    mkdirSync(join(root, "dir"), { recursive: true });
    writeFileSync(join(root, "dir/file"), "mine");
    const entry = await entryOf(root, "dir/file");
    // The same file (same inode), now reached through a link elsewhere.
    const elsewhere = join(root, "..", "elsewhere");
    renameSync(join(root, "dir"), elsewhere);
    symlinkSync(elsewhere, join(root, "dir"));
    expect(await readSource(entry, createSyntheticFileCheck())).toMatchObject({
      kind: "refused",
      code: "CHANGED",
      reason: expect.stringMatching(/directory on its path/),
    });
  });

  it("declares a file's size as of its open, not as of the walk", async () => {
    const root = rootWith({ file: "hello world" });
    const entry = await entryOf(root, "file");
    truncateSync(join(root, "file"), 3);
    expect(await readSource(entry, createSyntheticFileCheck())).toMatchObject({ kind: "whole", size: 3n });
  });

  it("reports a streamed file that shrank or changed while it was read", async () => {
    const size = CHUNK_SIZE * 3;
    const root = rootWith({ shrinking: Buffer.alloc(size, 1), growing: Buffer.alloc(size, 2) });
    const check = createSyntheticFileCheck();
    const shrinking = await readSource(await entryOf(root, "shrinking"), check);
    if (shrinking.kind !== "opened") throw new Error("not opened");
    const shrank = await streamSource(shrinking, async () => truncateSync(join(root, "shrinking"), CHUNK_SIZE));
    expect(shrank).toEqual({ kind: "shrank", read: CHUNK_SIZE, size });
    const growing = await readSource(await entryOf(root, "growing"), check);
    if (growing.kind !== "opened") throw new Error("not opened");
    let read = 0;
    const grew = await streamSource(growing, async (chunk) => {
      read += chunk.length;
      await appendFile(join(root, "growing"), "more");
    });
    // Exactly the size at the open, and `changed`.
    expect(read).toBe(size);
    expect(grew).toEqual({ kind: "complete", changed: true });
  });

  it("reads a synthetic file to EOF and declares what it read", async () => {
    const entry = await entryOf("/proc/self/status", "");
    const source = await readSource(entry, createSyntheticFileCheck());
    expect(source).toMatchObject({ kind: "whole", changed: false });
    if (source.kind !== "whole") throw new Error("not whole");
    expect(source.size).toBe(BigInt(source.data.length));
    expect(source.data.toString()).toMatch(/\nPid:\t\d+\n/);
  });
});

describe("readWholeFile", () => {
  it("stops past its limit", async () => {
    const root = rootWith({ file: Buffer.alloc(200_000) });
    const handle = await open(join(root, "file"));
    try {
      expect(await readWholeFile(handle, 100_000)).toEqual({ kind: "too-large", limit: 100_000 });
    } finally {
      await handle.close();
    }
  });
});
