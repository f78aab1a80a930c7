// copyFrom against an agent that attacks the host: every attack must be refused with a
// clear error, nothing may appear outside the destination, no temp file may be left
// behind, and memory must stay bounded however much the agent sends.

import { existsSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { type HostileAgent, type HostileScenario, startHostileAgent } from "@guestkit/testkit";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CopyError } from "../src/copy/copy-error.js";
import { copyFrom } from "../src/copy/copy-from.js";
import type { CopyOptions } from "../src/copy/copy-types.js";
import type { GuestErrorReason } from "../src/guest-error.js";
import { runCli } from "./cli-support.js";
import { type CopyClient, connectCopyClient, peakRssGrowth } from "./copy-fixture.js";

/** Whether the temp dirs' file system clamps the year 10000 (ext4 stops at 2446; tmpfs holds it). */
const TMPDIR_CLAMPS_YEAR_10000 = (() => {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-time-probe-"));
  try {
    writeFileSync(join(dir, "probe"), "");
    utimesSync(join(dir, "probe"), 253_402_300_800, 253_402_300_800);
    return statSync(join(dir, "probe")).mtimeMs !== 253_402_300_800_000;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();

let work: string;
let dest: string;
let outside: string;
let agent: HostileAgent | undefined;
let client: CopyClient | undefined;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-hostile-test-"));
  dest = join(work, "dest");
  outside = join(work, "outside");
  await mkdir(dest);
  await mkdir(outside);
});

afterEach(async () => {
  client?.close();
  client = undefined;
  await agent?.stop();
  agent = undefined;
  await rm(work, { recursive: true, force: true });
});

async function connect(scenario: HostileScenario, extra: { count?: number } = {}): Promise<CopyClient> {
  agent = await startHostileAgent({ scenario, outsideDir: outside, ...extra });
  client = await connectCopyClient(agent.socketPath);
  return client;
}

/** Runs the attack and returns the error it must fail with. */
async function refused(scenario: HostileScenario, options: CopyOptions = {}): Promise<CopyError> {
  const guest = await connect(scenario);
  const error = await copyFrom(guest, "/srv/root", dest, options).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error, `${scenario} must fail`).toBeInstanceOf(CopyError);
  return error as CopyError;
}

/** Every path under `dir`, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  const names = await readdir(dir, { recursive: true });
  return names.map(String).sort();
}

/** Nothing escaped: the work dir holds only dest and the (empty) sentinel dir, and no temp file anywhere. */
async function expectContained(): Promise<void> {
  expect((await readdir(work)).sort()).toEqual(["dest", "outside"]);
  expect(await readdir(outside)).toEqual([]);
  const inside = await tree(dest);
  expect(inside.filter((path) => path.includes(".guestkit-"))).toEqual([]);
  expect(inside.filter((path) => /escaped|evil/.test(path))).toEqual([]);
}

describe("copyFrom refuses a hostile guest", () => {
  const unsafe: Array<[HostileScenario, GuestErrorReason, RegExp]> = [
    ["traversal", "unsafe-entry", /refused entry "root\/\.\.\/\.\.\/escaped": `\.\.` in path/],
    ["traversal-root", "unsafe-entry", /refused entry "\.\.\/escaped": `\.\.` in path/],
    ["absolute", "unsafe-entry", /absolute path/],
    ["symlink-then-file", "unsafe-entry", /refused entry "root\/a": absolute symlink target/],
    ["inner-symlink-then-file", "unsafe-entry", /refused entry "root\/a\/evil": goes through the symbolic link a/],
    ["link-escape", "unsafe-entry", /symlink target points outside the destination: "\.\.\/\.\.\/escaped"/],
    ["link-chain", "unsafe-entry", /symlink target has `\.\.` after a name: "up\/\.\.\/\.\."/],
    ["dir-over-link", "unsafe-entry", /refused entry "root\/d": .* exists and is a symbolic link/],
    ["nul-name", "unsafe-entry", /path contains a NUL byte/],
    ["empty-name", "unsafe-entry", /empty name in path/],
    ["foreign-root", "unsafe-entry", /outside the copied tree/],
    ["oversize", "size-mismatch", /more data than the declared size of 16 bytes/],
    ["undersize", "size-mismatch", /10 of the declared 100 bytes arrived/],
    ["endless", "size-mismatch", /more data than the declared size of 1048576 bytes/],
    ["no-final", "protocol", /closed the stream without the final `end`: the transfer is incomplete/],
    ["data-first", "protocol", /data arrived before any start message/],
    ["only-final-end", "protocol", /protocol error: the guest ended the transfer without sending any entry/],
    ["batch-oversize", "size-mismatch", /more data than the declared size of 4 bytes/],
    ["batch-undersize", "size-mismatch", /10 of the declared 100 bytes arrived/],
    ["batch-traversal", "unsafe-entry", /refused entry "root\/\.\.\/\.\.\/escaped": `\.\.` in path/],
    ["batch-symlink-then-file", "unsafe-entry", /refused entry "root\/a": absolute symlink target/],
    [
      "batch-inner-symlink-then-file",
      "unsafe-entry",
      /refused entry "root\/a\/evil": goes through the symbolic link a/,
    ],
    ["batch-large-file", "protocol", /a file of 65537 bytes in a batch/],
    ["batch-too-many", "protocol", /a batch of 1025 entries/],
    ["batch-too-big", "protocol", /a batch with more than 262144 bytes of data/],
    // Cut while decoding (packages/protocol/src/bounded-decode.ts), so the call fails.
    ["batch-flood", "internal", /CopyFromGuestResponse: 4097 entries in one message, more than the 4096 allowed/],
    ["batch-in-entry", "protocol", /a batch arrived before the previous entry's `end`/],
    ["batch-dir-data", "protocol", /data arrived for a directory/],
  ];
  for (const [scenario, kind, message] of unsafe) {
    it(`${scenario}: refused with ${kind}`, async () => {
      const error = await refused(scenario);
      expect(error.reason).toBe(kind);
      expect(error.message).toMatch(message);
      await expectContained();
    });
  }

  it("reports the entries that were completed before the refusal", async () => {
    const error = await refused("inner-symlink-then-file");
    // root, root/sub and root/a were complete when root/a/evil came.
    expect(error.entriesCompleted).toBe(3);
    expect(error.message).toMatch(/3 entries completed before the failure were left in place/);
    expect(await readlink(join(dest, "root", "a"))).toBe("sub");
  });

  it("through-existing-link: refuses to write through a symlink already in the destination", async () => {
    await mkdir(join(dest, "root"));
    await symlink(outside, join(dest, "root", "a"));
    const error = await refused("through-existing-link");
    expect(error.reason).toBe("unsafe-entry");
    expect(error.message).toMatch(/refused entry "root\/a\/evil": goes through the symbolic link a/);
    expect(await readdir(outside)).toEqual([]);
    expect((await tree(dest)).sort()).toEqual(["root", "root/a"]);
  });

  it("undersize: a file that fails leaves the existing file at its name untouched", async () => {
    await writeFile(join(dest, "root"), "original contents");
    const error = await refused("undersize");
    expect(error.reason).toBe("size-mismatch");
    expect(await readFile(join(dest, "root"), "utf8")).toBe("original contents");
    await expectContained();
  });

  it("shrunk-file: a file the guest says shrank part-way fails the copy, and is never committed", async () => {
    for (const options of [{}, { acceptChangingFiles: true }]) {
      const error = await refused("shrunk-file", options);
      expect(error.reason).toBe("source-changed");
      expect(error.message).toMatch(
        /guest: "root\/f" shrank while it was read \(shrank\): no complete copy of it exists/,
      );
      expect(error.entriesCompleted).toBe(1);
      expect(await tree(dest)).toEqual(["root"]);
      await rm(join(dest, "root"), { recursive: true });
      client?.close();
      client = undefined;
      await agent?.stop();
      agent = undefined;
    }
  });

  it("only-final-end: guestctl cp exits 1 with the protocol error, and the destination stays empty", async () => {
    agent = await startHostileAgent({ scenario: "only-final-end", outsideDir: outside });
    const result = await runCli(["--target", `unix:${agent.socketPath}`, "cp", "guest:/srv/root", `${dest}/`]);
    expect(result).toMatchObject({
      code: 1,
      stdout: "",
      stderr: "guestctl: protocol error: the guest ended the transfer without sending any entry\n",
    });
    expect(await tree(dest)).toEqual([]);
  });

  it.skipIf(!TMPDIR_CLAMPS_YEAR_10000)(
    "far-future-mtime: a time the local file system cannot store is refused, nothing written",
    async () => {
      const error = await refused("far-future-mtime");
      expect(error).toMatchObject({ reason: "local-io", errno: "EINVAL", path: "root" });
      expect(error.message).toMatch(
        /cannot write root: mtime 253402300800 \(\+010000-01-01T00:00:00\.000Z\) is outside what the file system can store: it would be 15032385535 \(2446-05-10/,
      );
      await expectContained();
      expect(await tree(dest)).toEqual([]);
    },
  );

  it("out-of-order: a directory entered again gets its mode and time back when it is left", async () => {
    const guest = await connect("out-of-order");
    const result = await copyFrom(guest, "/srv/root", dest);
    expect(result.entries).toBe(4);
    expect(await readFile(join(dest, "root", "a", "late"), "utf8")).toBe("aaaa");
    const a = await lstat(join(dest, "root", "a"), { bigint: true });
    expect(Number(a.mode) & 0o7777).toBe(0o555);
    expect(Math.abs(Number(a.mtimeNs - 1_700_000_000_500_000_000n))).toBeLessThan(1000);
  });

  it("setuid: drops setuid and setgid bits unless keepSetuid", async () => {
    const guest = await connect("setuid");
    await copyFrom(guest, "/srv/root", dest);
    const modeOf = async (name: string) => (await stat(join(dest, "root", name))).mode & 0o7777;
    expect(await modeOf("suid")).toBe(0o755);
    expect(await modeOf("sgid")).toBe(0o755);
    expect(await modeOf("both")).toBe(0o755);
    expect((await stat(join(dest, "root"))).mode & 0o7777).toBe(0o775);

    await rm(join(dest, "root"), { recursive: true });
    await copyFrom(guest, "/srv/root", dest, { keepSetuid: true });
    expect(await modeOf("suid")).toBe(0o4755);
    expect(await modeOf("sgid")).toBe(0o2755);
    expect(await modeOf("both")).toBe(0o6755);
    expect((await stat(join(dest, "root"))).mode & 0o7777).toBe(0o2775);
  });

  it("benign: a well-behaved transfer from the same harness succeeds", async () => {
    const guest = await connect("benign");
    const result = await copyFrom(guest, "/srv/root", dest);
    expect(result).toMatchObject({ entries: 3, bytes: 5, partial: false, skippedCount: 0 });
    expect(await readFile(join(dest, "root", "file"), "utf8")).toBe("aaaaa");
    expect(await readlink(join(dest, "root", "link"))).toBe("file");
    const mtime = (await lstat(join(dest, "root", "file"), { bigint: true })).mtimeNs;
    expect(Math.abs(Number(mtime - 1_700_000_000_500_000_000n))).toBeLessThan(1000);
    await expectContained();
  });
});

describe("copyFrom checks batched entries as it checks the others", () => {
  it("batch-benign: a well-behaved batch lands like the same entries sent one by one", async () => {
    const guest = await connect("batch-benign");
    const result = await copyFrom(guest, "/srv/root", dest);
    expect(result).toMatchObject({ entries: 3, bytes: 5, partial: false, skippedCount: 0 });
    expect(await readFile(join(dest, "root", "file"), "utf8")).toBe("aaaaa");
    expect(await readlink(join(dest, "root", "link"))).toBe("file");
    await expectContained();
  });

  it("batch-inner-symlink-then-file: counts what was completed in the batch before the refusal", async () => {
    const error = await refused("batch-inner-symlink-then-file");
    expect(error.entriesCompleted).toBe(3);
    expect(await readlink(join(dest, "root", "a"))).toBe("sub");
    await expectContained();
  });
});

/** The engine's full GC, for measuring what is really live. */
function exposeGc(): () => void {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

/** Bytes live on the JS heap after a full GC. */
function liveHeap(gc: () => void): number {
  gc();
  return process.memoryUsage().heapUsed;
}

describe("copyFrom keeps memory bounded against a hostile guest", () => {
  it("endless-huge: an endless file stays bounded and abort leaves no temp file", async () => {
    const guest = await connect("endless-huge");
    const controller = new AbortController();
    let seen = 0;
    let error: unknown;
    const growth = await peakRssGrowth(async () => {
      error = await copyFrom(guest, "/srv/root", dest, {
        signal: controller.signal,
        onProgress: ({ bytes }) => {
          seen = bytes;
          if (bytes >= 512 * 1024 * 1024) controller.abort();
        },
      }).catch((reason: unknown) => reason);
    });
    expect(error).toBeInstanceOf(CopyError);
    expect((error as CopyError).reason).toBe("cancelled");
    expect(seen).toBeGreaterThanOrEqual(512 * 1024 * 1024);
    expect(growth).toBeLessThan(100);
    expect(await readdir(dest)).toEqual([]);
    await expectContained();
  }, 120_000);

  it("many-entries: a million tiny entries keep memory bounded", async () => {
    // On tmpfs when there is one: creating a file on this VM's disk takes about a
    // millisecond, and what is measured here is the host's memory, not the disk.
    const shm = existsSync("/dev/shm")
      ? await mkdtemp("/dev/shm/guestkit-hostile-test-")
      : await mkdtemp(join(work, "m"));
    try {
      const count = 1_000_000;
      const guest = await connect("many-entries", { count });
      const gc = exposeGc();
      let liveAtTenth = 0;
      let result: Awaited<ReturnType<typeof copyFrom>> | undefined;
      const growth = await peakRssGrowth(async () => {
        result = await copyFrom(guest, "/srv/root", shm, {
          onProgress: ({ entries }) => {
            // Progress may be reported for several entries at once: take the first report
            // at or past a tenth, once.
            if (liveAtTenth === 0 && entries >= count / 10) liveAtTenth = liveHeap(gc);
          },
        });
      });
      const liveGrowth = (liveHeap(gc) - liveAtTenth) / (1024 * 1024);
      // The entries, plus the root and one directory per thousand.
      expect(result?.entries).toBe(count + 1 + count / 1000);
      expect((await readdir(join(shm, "root"))).length).toBe(count / 1000);
      expect(await readdir(join(shm, "root", "d999"))).toHaveLength(1000);
      // No per-entry state: what is live after a full GC hardly moves over 900,000 entries
      // (18 bytes kept per entry would already fail this).
      expect(liveAtTenth).toBeGreaterThan(0);
      expect(liveGrowth).toBeLessThan(16);
      // Peak RSS includes garbage not yet collected: V8 grows its young generation to its
      // maximum under a steady allocation rate (about 110 MiB here), whatever the count.
      expect(growth).toBeLessThan(200);
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  }, 900_000);
});
