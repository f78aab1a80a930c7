// Copies of sources that do not hold still, and of sources whose size says nothing:
// files that shrink or are written to while they are read, in both directions, through
// the library and through guestctl, and /proc and /sys files. Real agent, real files:
// the agent runs on this machine, so "guest" paths are local paths too.
//
// A change has to land while the file is being read, deterministically. The files are
// 64 MiB, and the change is made once the first bytes have arrived: from onProgress in
// the library (the host reads, or is held back by flow control, at most a few MiB ahead
// of the callback), and for guestctl by stopping its process (SIGSTOP) once its temp
// file has appeared, changing the file, and letting it go on (SIGCONT): a stopped host
// holds the agent back by flow control just the same.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, truncateSync, writeSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CopyError } from "../src/copy/copy-error.js";
import type { CopyProgress } from "../src/copy/copy-types.js";
import { type CliResult, startCli, stopAll } from "./cli-support.js";
import { rejection, useGuestFixture } from "./guest-fixture.js";

const suite = useGuestFixture({ tempDirPrefix: "guestkit-changing-", afterEachTest: stopAll });

const SIZE = 64 * 1024 * 1024;
const TAIL = 1024 * 1024;

/** A file of SIZE bytes of 1s. */
async function bigFile(path: string): Promise<void> {
  await writeFile(path, Buffer.alloc(SIZE, 1));
}

/** Its last MiB rewritten with 2s, in place: same size, new mtime and ctime. */
function rewriteTail(path: string): void {
  const fd = openSync(path, "r+");
  writeSync(fd, Buffer.alloc(TAIL, 2), 0, TAIL, SIZE - TAIL);
  closeSync(fd);
}

/** Cut to 1 MiB, below where the reader is by the time the change lands. */
function shrink(path: string): void {
  truncateSync(path, TAIL);
}

/** An onProgress that runs `change` once, when the first data has moved. */
function once(change: () => void): (progress: CopyProgress) => void {
  let done = false;
  return (progress) => {
    if (done || progress.bytes === 0) return;
    done = true;
    change();
  };
}

/** Names in `dir` that are a copy's temp files. */
function temps(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.includes(".guestkit-"));
}

/**
 * guestctl cp guest:SRC DIR/, with `change` made while it is stopped right after its
 * temp file for the download appeared in DIR.
 */
async function cpWhileChanging(
  source: string,
  dir: string,
  change: () => void,
  flags: string[] = [],
): Promise<CliResult> {
  const cli = startCli(["--target", suite.guest.target, "cp", ...flags, `guest:${source}`, `${dir}/`]);
  while (temps(dir).length === 0) {
    if (cli.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  cli.child.kill("SIGSTOP");
  try {
    change();
  } finally {
    cli.child.kill("SIGCONT");
  }
  return cli.result;
}

describe("a file that shrinks while it is read", () => {
  it("copyFrom fails with source-changed, and writes nothing under the file's name", async () => {
    const source = join(suite.dir, "big");
    await bigFile(source);
    const guest = suite.guest.client();
    const error = await rejection(
      guest.copyFrom(source, join(suite.dir, "new"), { onProgress: once(() => shrink(source)) }),
    );
    expect(error).toBeInstanceOf(CopyError);
    expect((error as CopyError).reason).toBe("source-changed");
    expect(error.message).toMatch(/"big" shrank while it was read \(the file shrank to \d+ of 67108864 bytes/);
    expect(readdirSync(suite.dir)).toEqual(["big"]);
  });

  it("guestctl cp from the guest exits 1, and an existing destination keeps its old content", async () => {
    const source = join(suite.dir, "big");
    await bigFile(source);
    const dir = join(suite.dir, "dest");
    await mkdir(dir);
    await writeFile(join(dir, "big"), "old content");
    const result = await cpWhileChanging(source, dir, () => shrink(source));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^guestctl: guest: "big" shrank while it was read/);
    expect(readFileSync(join(dir, "big"), "utf8")).toBe("old content");
    expect(temps(dir)).toEqual([]);
  });

  it("copyTo fails with source-changed too, and the guest gets nothing under the name", async () => {
    const source = join(suite.dir, "big");
    await bigFile(source);
    const guest = suite.guest.client();
    const error = await rejection(
      guest.copyTo(source, join(suite.dir, "up"), { onProgress: once(() => shrink(source)) }),
    );
    expect((error as CopyError).reason).toBe("source-changed");
    expect(error.message).toMatch(/big shrank while it was being copied/);
    await expect.poll(() => readdirSync(suite.dir)).toEqual(["big"]);
  });
});

describe("a file written in place while it is read", () => {
  it("copyFrom fails with source-changed, unless acceptChangingFiles keeps it as read and lists it", async () => {
    const source = join(suite.dir, "big");
    await bigFile(source);
    const destination = join(suite.dir, "copy");
    await writeFile(destination, "old content");
    const guest = suite.guest.client();
    const error = await rejection(guest.copyFrom(source, destination, { onProgress: once(() => rewriteTail(source)) }));
    expect((error as CopyError).reason).toBe("source-changed");
    expect(error.message).toMatch(/"big" changed while it was read .*it was not written \(acceptChangingFiles/);
    expect(readFileSync(destination, "utf8")).toBe("old content");
    expect(temps(suite.dir)).toEqual([]);

    await bigFile(source);
    const result = await guest.copyFrom(source, destination, {
      acceptChangingFiles: true,
      onProgress: once(() => rewriteTail(source)),
    });
    expect(result).toMatchObject({ entries: 1, bytes: SIZE, changed: ["big"], changedCount: 1, partial: false });
    // As read: the old head and the new tail, which is why it takes the option.
    const copied = readFileSync(destination);
    expect([copied.length, copied[0], copied[SIZE - 1]]).toEqual([SIZE, 1, 2]);

    // A file that holds still is not listed.
    const calm = await guest.copyFrom(source, join(suite.dir, "calm"), { acceptChangingFiles: true });
    expect(calm).toMatchObject({ changed: [], changedCount: 0 });
  });

  it("guestctl cp exits 1 and names the option; --accept-changing-files copies it with a warning", async () => {
    const source = join(suite.dir, "big");
    await bigFile(source);
    const dir = join(suite.dir, "dest");
    await mkdir(dir);
    await writeFile(join(dir, "big"), "old content");
    const refused = await cpWhileChanging(source, dir, () => rewriteTail(source));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^guestctl: guest: "big" changed while it was read/);
    expect(refused.stderr).toMatch(/--accept-changing-files/);
    expect(readFileSync(join(dir, "big"), "utf8")).toBe("old content");

    await bigFile(source);
    const accepted = await cpWhileChanging(source, dir, () => rewriteTail(source), ["--accept-changing-files"]);
    expect(accepted).toMatchObject({
      code: 0,
      stderr: "guestctl: warning: big changed while it was read; copied as read\n",
    });
    expect(readFileSync(join(dir, "big")).length).toBe(SIZE);
    expect(temps(dir)).toEqual([]);
  });

  it("copyTo fails before the file's end, so the agent commits nothing; accepted, it lands and is listed", async () => {
    const source = join(suite.dir, "big");
    await bigFile(source);
    const target = join(suite.dir, "up");
    await writeFile(target, "old content");
    const guest = suite.guest.client();
    const error = await rejection(guest.copyTo(source, target, { onProgress: once(() => rewriteTail(source)) }));
    expect((error as CopyError).reason).toBe("source-changed");
    expect(error.message).toMatch(/^big changed while it was read/);
    // The agent drops the staged file when the call is cancelled.
    await expect.poll(() => temps(suite.dir)).toEqual([]);
    expect(readFileSync(target, "utf8")).toBe("old content");

    await bigFile(source);
    const result = await guest.copyTo(source, target, {
      acceptChangingFiles: true,
      onProgress: once(() => rewriteTail(source)),
    });
    expect(result).toMatchObject({ entries: 1, bytes: SIZE, changed: ["big"], changedCount: 1 });
    const copied = readFileSync(target);
    expect([copied.length, copied[0], copied[SIZE - 1]]).toEqual([SIZE, 1, 2]);
  });
});

describe("/proc and /sys files", () => {
  // procfs says 0 bytes, sysfs 4096 for every attribute: neither is what they hold.
  const files = ["/proc/cpuinfo", "/proc/version", "/sys/devices/system/cpu/online"];

  it("copyFrom and guestctl cp copy what they hold, as reading them directly gives", async () => {
    const guest = suite.guest.client();
    for (const path of files) {
      const name = path.replaceAll("/", "_");
      const result = await guest.copyFrom(path, join(suite.dir, name));
      const direct = readFileSync(path);
      expect(direct.length, path).toBeGreaterThan(0);
      expect(readFileSync(join(suite.dir, name)).equals(direct), path).toBe(true);
      expect(result).toMatchObject({ entries: 1, bytes: direct.length, partial: false });
    }
    const cli = await startCli(["--target", suite.guest.target, "cp", "guest:/proc/cpuinfo", `${suite.dir}/`]).result;
    expect(cli).toMatchObject({ code: 0, stderr: "" });
    expect(readFileSync(join(suite.dir, "cpuinfo")).equals(readFileSync("/proc/cpuinfo"))).toBe(true);
  });

  it("copyTo reads local ones whole as well", async () => {
    const guest = suite.guest.client();
    for (const path of files) {
      const target = join(suite.dir, path.replaceAll("/", "_"));
      await guest.copyTo(path, target);
      expect(readFileSync(target).equals(readFileSync(path)), path).toBe(true);
    }
  });

  it("one that holds more than 64 MiB is refused with a clear error, nothing written", async () => {
    const guest = suite.guest.client();
    // The agent's own page map: 8 bytes per page of its address space.
    const error = await rejection(guest.copyFrom("/proc/self/pagemap", join(suite.dir, "pagemap")));
    expect(error.message).toMatch(/synthetic file system \(procfs, sysfs...\) that holds more than 67108864 bytes/);
    expect((error as CopyError).guestCode).toBe("EFBIG");
    expect(existsSync(join(suite.dir, "pagemap"))).toBe(false);
  });
});
