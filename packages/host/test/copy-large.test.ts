// Big transfers against the real agent: a 256 MiB file both ways with the host's memory
// staying flat, progress callbacks, and aborts that leave no temp file on either side.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { CopyError } from "../src/copy/copy-error.js";
import { copyFrom } from "../src/copy/copy-from.js";
import { copyTo } from "../src/copy/copy-to.js";
import type { CopyProgress } from "../src/copy/copy-types.js";
import { peakRssGrowth, useCopyAgent } from "./copy-fixture.js";

const MiB = 1024 * 1024;
const BIG = 256 * MiB;

const suite = useCopyAgent("guestkit-copy-large-");

/** A sparse file of `size` bytes with random megabytes at the start, the middle and the end. */
async function makeBigFile(path: string, size: number): Promise<void> {
  const handle = await open(path, "w");
  try {
    await handle.truncate(size);
    for (const offset of [0, size / 2, size - MiB]) await handle.write(randomBytes(MiB), 0, MiB, offset);
  } finally {
    await handle.close();
  }
}

async function sha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Names under `dir` that are temp files of either side (both use the `.guestkit-` marker). */
async function tempFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).filter((name) => name.includes(".guestkit-"));
}

/** Waits up to 5 s for the agent to clean up after a cancelled call, then lists what is left. */
async function tempFilesAfterCleanup(dir: string): Promise<string[]> {
  for (let i = 0; i < 100 && (await tempFiles(dir)).length > 0; i += 1) await sleep(50);
  return tempFiles(dir);
}

describe("large transfers", () => {
  it("a 256 MiB file goes in and comes back with the host's memory bounded", async () => {
    const source = join(suite.work, "big.bin");
    await makeBigFile(source, BIG);
    const want = await sha256(source);
    await mkdir(join(suite.work, "guest"));
    await mkdir(join(suite.work, "back"));

    const upGrowth = await peakRssGrowth(() => copyTo(suite.client, source, join(suite.work, "guest")));
    expect((await stat(join(suite.work, "guest", "big.bin"))).size).toBe(BIG);
    expect(await sha256(join(suite.work, "guest", "big.bin"))).toBe(want);

    const downGrowth = await peakRssGrowth(() =>
      copyFrom(suite.client, join(suite.work, "guest", "big.bin"), join(suite.work, "back")),
    );
    expect(await sha256(join(suite.work, "back", "big.bin"))).toBe(want);
    // Flow control and one-message-at-a-time handling keep the host's memory far below the
    // file's size; what remains is GC slack (garbage chunks not collected yet).
    expect(upGrowth).toBeLessThan(100);
    expect(downGrowth).toBeLessThan(100);
  }, 180_000);

  it("progress reports bytes and entries as they complete, both ways", async () => {
    const source = join(suite.work, "tree");
    await mkdir(join(source, "sub"), { recursive: true });
    await writeFile(join(source, "one"), randomBytes(3 * MiB));
    await writeFile(join(source, "sub", "two"), randomBytes(100));
    await mkdir(join(suite.work, "guest"));
    for (const direction of ["up", "down"] as const) {
      const seen: CopyProgress[] = [];
      const onProgress = (progress: CopyProgress) => seen.push({ ...progress });
      const result =
        direction === "up"
          ? await copyTo(suite.client, source, join(suite.work, "guest", "tree"), { onProgress })
          : await copyFrom(suite.client, join(suite.work, "guest", "tree"), join(suite.work, "back"), { onProgress });
      expect(result).toMatchObject({ bytes: 3 * MiB + 100, entries: 4 });
      // Several data callbacks for the 3 MiB file, never going backwards.
      expect(seen.filter((progress) => progress.path.endsWith("one")).length).toBeGreaterThan(3);
      for (let i = 1; i < seen.length; i += 1) {
        expect(seen[i]?.bytes).toBeGreaterThanOrEqual(seen[i - 1]?.bytes as number);
        expect(seen[i]?.entries).toBeGreaterThanOrEqual(seen[i - 1]?.entries as number);
      }
      expect(seen.at(-1)).toMatchObject({ bytes: 3 * MiB + 100, entries: 4 });
    }
  });

  it("aborting an upload mid-file rejects as cancelled and leaves no temp file in the guest", async () => {
    const source = join(suite.work, "big.bin");
    await makeBigFile(source, 128 * MiB);
    await mkdir(join(suite.work, "guest"));
    const controller = new AbortController();
    const error = await copyTo(suite.client, source, join(suite.work, "guest"), {
      signal: controller.signal,
      onProgress: ({ bytes }) => {
        if (bytes >= 16 * MiB) controller.abort();
      },
    }).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(CopyError);
    expect((error as CopyError).reason).toBe("cancelled");
    // The agent notices the cancelled call on its own schedule: give it a moment.
    expect(await tempFilesAfterCleanup(join(suite.work, "guest"))).toEqual([]);
    expect(await readdir(join(suite.work, "guest"))).toEqual([]);
  });

  it("aborting a download mid-file rejects as cancelled and leaves no temp file here", async () => {
    const guestFile = join(suite.work, "big.bin");
    await makeBigFile(guestFile, 128 * MiB);
    await mkdir(join(suite.work, "back"));
    const controller = new AbortController();
    const error = await copyFrom(suite.client, guestFile, join(suite.work, "back"), {
      signal: controller.signal,
      onProgress: ({ bytes }) => {
        if (bytes >= 16 * MiB) controller.abort();
      },
    }).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(CopyError);
    expect((error as CopyError).reason).toBe("cancelled");
    expect(await readdir(join(suite.work, "back"))).toEqual([]);
    expect(await tempFiles(suite.work)).toEqual([]);
  });

  it("an exception from onProgress stops the copy, with the exception as the cause", async () => {
    await writeFile(join(suite.work, "file"), randomBytes(MiB));
    await mkdir(join(suite.work, "guest"));
    const oops = new Error("oops");
    const onProgress = () => {
      throw oops;
    };
    for (const copy of [
      () => copyTo(suite.client, join(suite.work, "file"), join(suite.work, "guest"), { onProgress }),
      () => copyFrom(suite.client, join(suite.work, "file"), join(suite.work, "back"), { onProgress }),
    ]) {
      const error = await copy().catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(CopyError);
      expect(error).toMatchObject({ reason: "cancelled", message: "the onProgress callback threw: oops", cause: oops });
    }
    expect(await tempFilesAfterCleanup(suite.work)).toEqual([]);
  });

  it("an already-aborted signal copies nothing", async () => {
    await writeFile(join(suite.work, "file"), "x");
    await mkdir(join(suite.work, "guest"));
    const signal = AbortSignal.abort();
    await expect(
      copyTo(suite.client, join(suite.work, "file"), join(suite.work, "guest"), { signal }),
    ).rejects.toMatchObject({
      reason: "cancelled",
    });
    await expect(
      copyFrom(suite.client, join(suite.work, "file"), join(suite.work, "guest"), { signal }),
    ).rejects.toMatchObject({
      reason: "cancelled",
    });
    expect(await readdir(join(suite.work, "guest"))).toEqual([]);
  });
});
