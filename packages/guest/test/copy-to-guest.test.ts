import { spawn } from "node:child_process";
import {
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type CopyToGuestBatchEntrySchema,
  CopyToGuestRequestSchema,
  type CopyToGuestResponse,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  SMALL_FILE_BYTES,
} from "@guestkit/protocol";
import { decodeResponse, encodeRequest, GUEST_METHODS, grpcFrame, RawGrpcConnection } from "@guestkit/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  entryMessages,
  eventually,
  fileMessages,
  makeTempDir,
  openDescriptorCount,
  type RequestInit,
  startTestAgent,
  type TestAgent,
  upload,
  useTestAgent,
} from "./copy-support.js";

const TEMP_MARKER = ".guestkit-";

type BatchEntryInit = MessageInitShape<typeof CopyToGuestBatchEntrySchema>;

/** 10000-01-01T00:00:00Z, past what ext4 stores (2446-05-10); tmpfs and btrfs hold it. */
const YEAR_10000 = 253_402_300_800n;

/** Whether the temp dirs' file system clamps YEAR_10000, as ext4 does (the refusal needs one that does). */
const TMPDIR_CLAMPS_YEAR_10000 = (() => {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-time-probe-"));
  try {
    writeFileSync(join(dir, "probe"), "");
    utimesSync(join(dir, "probe"), Number(YEAR_10000), Number(YEAR_10000));
    return statSync(join(dir, "probe"), { bigint: true }).mtimeNs / 1_000_000_000n !== YEAR_10000;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();

function leftovers(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((name) => name.includes(TEMP_MARKER));
}

function mtimeNs(path: string): bigint {
  return lstatSync(path, { bigint: true }).mtimeNs;
}

// Node's utimes takes a double (see @guestkit/copy timestamp.ts): whole seconds are exact and
// nanoseconds within one step of a double (2^-22 s, 238 ns) for dates before 2038.
const NANOSECOND_TOLERANCE = 239n;

function expectTime(path: string, seconds: bigint, nanos: number) {
  const wanted = seconds * 1_000_000_000n + BigInt(nanos);
  const actual = mtimeNs(path);
  const difference = actual > wanted ? actual - wanted : wanted - actual;
  expect(actual / 1_000_000_000n).toBe(seconds);
  expect(difference <= NANOSECOND_TOLERANCE, `mtime ${actual} vs ${wanted}`).toBe(true);
}

describe("CopyToGuest", () => {
  // A restrictive umask: modes must be exact regardless.
  const suite = useTestAgent({ umask: "077" });

  it("writes a file sent the original way, one entry per stream", async () => {
    const target = join(suite.dir, "hello.txt");
    const data = Buffer.alloc(100_000, "x");
    const response = await upload(suite.agent.client, fileMessages(target, data));
    expect(response).toMatchObject({ success: true, error: "", bytesWritten: 100_000n, entriesWritten: 1n });
    expect(readFileSync(target).equals(data)).toBe(true);
    expect(statSync(target).mode & 0o7777).toBe(0o644);
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("creates missing parents with mode 0755 despite the agent's umask", async () => {
    const target = join(suite.dir, "a", "b", "file");
    expect((await upload(suite.agent.client, fileMessages(target, "x"))).success).toBe(true);
    expect(statSync(join(suite.dir, "a")).mode & 0o7777).toBe(0o755);
    expect(statSync(join(suite.dir, "a", "b")).mode & 0o7777).toBe(0o755);
  });

  it("leaves the old target intact and no temporary file when the stream is cancelled mid-file", async () => {
    const target = join(suite.dir, "precious");
    writeFileSync(target, "old content");
    const descriptors = openDescriptorCount(suite.agent.agent.pid);
    const call = suite.agent.client.copyToGuest(new grpc.Metadata(), {}, () => undefined);
    call.on("error", () => undefined);
    const size = 10 * 1024 * 1024;
    call.write(
      create(CopyToGuestRequestSchema, { request: { case: "start", value: { path: target, size: BigInt(size) } } }),
    );
    call.write(create(CopyToGuestRequestSchema, { request: { case: "data", value: Buffer.alloc(64 * 1024, "n") } }));
    // The agent is writing to its temporary file: now drop the call.
    expect(await eventually(() => leftovers(suite.dir).length === 1)).toBe(true);
    call.cancel();
    expect(await eventually(() => leftovers(suite.dir).length === 0)).toBe(true);
    expect(readFileSync(target, "utf8")).toBe("old content");
    expect(await eventually(() => openDescriptorCount(suite.agent.agent.pid) <= descriptors)).toBe(true);
  });

  it("cleans up when the client process dies mid-file", async () => {
    const target = join(suite.dir, "precious");
    writeFileSync(target, "old content");
    const require = createRequire(import.meta.url);
    const script = join(suite.dir, "uploader.mjs");
    // A separate process, so the connection really drops (no cancel is ever sent).
    writeFileSync(
      script,
      `import { create } from ${JSON.stringify(pathToFileURL(require.resolve("@bufbuild/protobuf")).href)};
import * as grpc from ${JSON.stringify(pathToFileURL(require.resolve("@grpc/grpc-js")).href)};
import { CopyToGuestRequestSchema, GuestServiceClient } from ${JSON.stringify(pathToFileURL(require.resolve("@guestkit/protocol")).href)};
const client = new GuestServiceClient(${JSON.stringify(`unix:${suite.agent.agent.socketPath}`)}, grpc.credentials.createInsecure());
const call = client.copyToGuest(new grpc.Metadata(), {}, () => {});
call.write(create(CopyToGuestRequestSchema, { request: { case: "start", value: { path: ${JSON.stringify(target)}, size: 1048576n } } }));
call.write(create(CopyToGuestRequestSchema, { request: { case: "data", value: new Uint8Array(65536) } }));
setInterval(() => {}, 1000);
`,
    );
    const uploader = spawn(process.execPath, [script], { stdio: "inherit" });
    const exited = new Promise((resolve) => uploader.once("exit", resolve));
    try {
      expect(await eventually(() => leftovers(suite.dir).length === 1)).toBe(true);
    } finally {
      uploader.kill("SIGKILL");
      await exited;
    }
    expect(await eventually(() => leftovers(suite.dir).length === 0)).toBe(true);
    expect(readFileSync(target, "utf8")).toBe("old content");
  });

  it("rejects fewer bytes than size, keeping the old target", async () => {
    const target = join(suite.dir, "short");
    writeFileSync(target, "old");
    const messages = entryMessages({ path: target, size: 10n }, Buffer.from("12345"));
    const response = await upload(suite.agent.client, messages);
    expect(response).toMatchObject({
      success: false,
      errorCode: "SIZE_MISMATCH",
      errorPath: target,
      entriesWritten: 0n,
    });
    expect(response.error).toMatch(/5 of the declared 10 bytes/);
    expect(readFileSync(target, "utf8")).toBe("old");
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("rejects more bytes than size, keeping the old target", async () => {
    const target = join(suite.dir, "long");
    writeFileSync(target, "old");
    const messages = entryMessages({ path: target, size: 3n }, Buffer.from("1234567890"), 4);
    const response = await upload(suite.agent.client, messages);
    expect(response).toMatchObject({ success: false, errorCode: "SIZE_MISMATCH", errorPath: target });
    expect(readFileSync(target, "utf8")).toBe("old");
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("treats framing errors as PROTOCOL failures, in-band", async () => {
    const target = join(suite.dir, "framed");
    const dataFirst = await upload(suite.agent.client, [{ request: { case: "data", value: Buffer.from("x") } }]);
    expect(dataFirst).toMatchObject({ success: false, errorCode: "PROTOCOL" });
    expect(dataFirst.error).toMatch(/before any start/);

    const endFirst = await upload(suite.agent.client, [{ request: { case: "end", value: {} } }]);
    expect(endFirst).toMatchObject({ success: false, errorCode: "PROTOCOL" });

    const restart = await upload(suite.agent.client, [
      { request: { case: "start", value: { path: target, size: 1n } } },
      { request: { case: "start", value: { path: target, size: 1n } } },
    ]);
    expect(restart).toMatchObject({ success: false, errorCode: "PROTOCOL", errorPath: target });
    expect(restart.error).toMatch(/new start arrived before/);

    const noEnd = await upload(suite.agent.client, [
      { request: { case: "start", value: { path: target, size: 1n } } },
      { request: { case: "data", value: Buffer.from("x") } },
    ]);
    expect(noEnd).toMatchObject({ success: false, errorCode: "PROTOCOL", errorPath: target });
    expect(noEnd.error).toMatch(/ended before/);

    const dataForDirectory = await upload(suite.agent.client, [
      { request: { case: "start", value: { path: join(suite.dir, "d"), isDir: true } } },
      { request: { case: "data", value: Buffer.from("x") } },
    ]);
    expect(dataForDirectory).toMatchObject({ success: false, errorCode: "PROTOCOL" });

    expect(() => statSync(target)).toThrow(/ENOENT/);
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("validates the start message", async () => {
    const relative = await upload(suite.agent.client, fileMessages("relative/file", "x"));
    expect(relative).toMatchObject({ success: false, errorCode: "EINVAL" });
    expect(relative.error).toMatch(/not absolute/);

    const nul = await upload(suite.agent.client, fileMessages(`${suite.dir}/a\0b`, "x"));
    expect(nul).toMatchObject({ success: false, errorCode: "EINVAL" });
    expect(nul.error).toMatch(/NUL/);

    const negative = await upload(suite.agent.client, entryMessages({ path: join(suite.dir, "neg"), size: -1n }));
    expect(negative).toMatchObject({ success: false, errorCode: "EINVAL" });
    expect(negative.error).toMatch(/negative size/);

    const nanos = await upload(
      suite.agent.client,
      fileMessages(join(suite.dir, "n"), "x", { mtime: 1n, mtimeNanos: 1e9 }),
    );
    expect(nanos).toMatchObject({ success: false, errorCode: "EINVAL" });

    const before1970 = await upload(suite.agent.client, fileMessages(join(suite.dir, "old"), "x", { mtime: -1n }));
    expect(before1970).toMatchObject({ success: false, errorCode: "EINVAL" });
    expect(before1970.error).toMatch(/before 1970/);

    const linkWithoutTarget = await upload(
      suite.agent.client,
      entryMessages({ path: join(suite.dir, "l"), isSymlink: true }),
    );
    expect(linkWithoutTarget).toMatchObject({ success: false, errorCode: "EINVAL" });
    expect(readdirSync(suite.dir)).toEqual([]);
  });

  it("applies modes exactly, setuid, setgid and sticky included, under umask 077", async () => {
    const response = await upload(suite.agent.client, [
      ...fileMessages(join(suite.dir, "suid"), "x", { mode: 0o4755 }),
      ...fileMessages(join(suite.dir, "sgid"), "x", { mode: 0o2750 }),
      ...fileMessages(join(suite.dir, "default"), "x"),
      ...fileMessages(join(suite.dir, "open"), "x", { mode: 0o666 }),
      ...entryMessages({ path: join(suite.dir, "sticky"), isDir: true, mode: 0o1777 }),
      ...entryMessages({ path: join(suite.dir, "plain-dir"), isDir: true }),
    ]);
    expect(response).toMatchObject({ success: true, entriesWritten: 6n });
    const mode = (name: string) => statSync(join(suite.dir, name)).mode & 0o7777;
    expect(mode("suid")).toBe(0o4755);
    expect(mode("sgid")).toBe(0o2750);
    expect(mode("default")).toBe(0o644);
    expect(mode("open")).toBe(0o666);
    expect(mode("sticky")).toBe(0o1777);
    expect(mode("plain-dir")).toBe(0o755);
  });

  it("updates an existing directory's mode and time, and leaves its mode alone for mode 0", async () => {
    const dir = join(suite.dir, "existing");
    mkdirSync(dir, { mode: 0o700 });
    const first = await upload(
      suite.agent.client,
      entryMessages({ path: dir, isDir: true, mode: 0o1775, mtime: 1_600_000_000n }),
    );
    expect(first.success).toBe(true);
    expect(statSync(dir).mode & 0o7777).toBe(0o1775);
    expect(statSync(dir).mtimeMs).toBe(1_600_000_000_000);
    const second = await upload(suite.agent.client, entryMessages({ path: dir, isDir: true }));
    expect(second.success).toBe(true);
    expect(statSync(dir).mode & 0o7777).toBe(0o1775);
  });

  it("refuses a directory entry over a file, and a file entry over a directory", async () => {
    writeFileSync(join(suite.dir, "file"), "keep");
    mkdirSync(join(suite.dir, "dir"));
    const dirOverFile = await upload(suite.agent.client, entryMessages({ path: join(suite.dir, "file"), isDir: true }));
    expect(dirOverFile).toMatchObject({ success: false, errorCode: "EEXIST" });
    const fileOverDir = await upload(suite.agent.client, fileMessages(join(suite.dir, "dir"), "x"));
    expect(fileOverDir).toMatchObject({ success: false, errorCode: "EISDIR", errorPath: join(suite.dir, "dir") });
    expect(readFileSync(join(suite.dir, "file"), "utf8")).toBe("keep");
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("applies mtime with nanoseconds to files and directories, directories last", async () => {
    const top = join(suite.dir, "top");
    const sub = join(top, "sub");
    const response = await upload(suite.agent.client, [
      ...entryMessages({ path: top, isDir: true, mtime: 1_500_000_000n, mtimeNanos: 111_111_111 }),
      ...entryMessages({ path: sub, isDir: true, mtime: 1_500_000_001n, mtimeNanos: 222_222_222 }),
      ...fileMessages(join(sub, "file"), "content", { mtime: 1_700_000_000n, mtimeNanos: 123_456_789 }),
      // Written after its directory's entry: the directory's time must still hold.
      ...fileMessages(join(top, "late"), "late", { mtime: 1_400_000_000n, mtimeNanos: 999_999_999 }),
    ]);
    expect(response).toMatchObject({ success: true, entriesWritten: 4n, bytesWritten: 11n });
    expectTime(top, 1_500_000_000n, 111_111_111);
    expectTime(sub, 1_500_000_001n, 222_222_222);
    expectTime(join(sub, "file"), 1_700_000_000n, 123_456_789);
    expectTime(join(top, "late"), 1_400_000_000n, 999_999_999);
  });

  it.skipIf(!TMPDIR_CLAMPS_YEAR_10000)(
    "refuses an mtime the file system cannot store (year 10000), naming the entry, with nothing under its name",
    async () => {
      const dir = suite.dir;
      writeFileSync(join(dir, "precious"), "old");
      const cases: Array<[string, RequestInit[]]> = [
        ["small", fileMessages(join(dir, "small"), "x", { mtime: YEAR_10000 })],
        ["large", fileMessages(join(dir, "large"), Buffer.alloc(SMALL_FILE_BYTES + 1, 7), { mtime: YEAR_10000 })],
        ["precious", fileMessages(join(dir, "precious"), "new", { mtime: YEAR_10000 })],
        ["link", entryMessages({ path: join(dir, "link"), isSymlink: true, linkTarget: "x", mtime: YEAR_10000 })],
      ];
      for (const [name, messages] of cases) {
        const response = await upload(suite.agent.client, messages);
        expect(response, name).toMatchObject({
          success: false,
          errorCode: "EINVAL",
          errorPath: join(dir, name),
          entriesWritten: 0n,
        });
        expect(response.error).toMatch(
          /mtime 253402300800 \(\+010000-01-01T00:00:00\.000Z\) is outside what the file system can store: it would be 15032385535 \(2446-05-10/,
        );
      }
      expect(readFileSync(join(dir, "precious"), "utf8")).toBe("old");
      expect(readdirSync(dir).sort()).toEqual(["precious"]);
      expect(leftovers(dir)).toEqual([]);

      // A directory's time is set once its contents are in, so it fails last, naming it.
      const tree = join(dir, "tree");
      const response = await upload(suite.agent.client, [
        ...entryMessages({ path: tree, isDir: true, mtime: YEAR_10000 }),
        ...fileMessages(join(tree, "inside"), "in", { mtime: 1_700_000_000n }),
      ]);
      expect(response).toMatchObject({ success: false, errorCode: "EINVAL", errorPath: tree, entriesWritten: 2n });
      expect(response.error).toMatch(/outside what the file system can store/);
      // The latest time ext4 holds is still fine.
      const latest = await upload(suite.agent.client, fileMessages(join(dir, "late"), "x", { mtime: 15_032_385_535n }));
      expect(latest).toMatchObject({ success: true });
      expectTime(join(dir, "late"), 15_032_385_535n, 0);
    },
  );

  it("applies year 10000 where the file system holds it (tmpfs)", async () => {
    const shm = mkdtempSync("/dev/shm/guestkit-copy-");
    try {
      const response = await upload(suite.agent.client, [
        ...entryMessages({ path: join(shm, "dir"), isDir: true, mtime: YEAR_10000 }),
        ...fileMessages(join(shm, "dir", "small"), "x", { mtime: YEAR_10000, mtimeNanos: 5 }),
        ...fileMessages(join(shm, "large"), Buffer.alloc(SMALL_FILE_BYTES + 1, 7), { mtime: YEAR_10000 }),
      ]);
      expect(response).toMatchObject({ success: true, entriesWritten: 3n });
      for (const path of ["dir", "dir/small", "large"]) {
        expect(lstatSync(join(shm, path), { bigint: true }).mtimeNs / 1_000_000_000n).toBe(YEAR_10000);
      }
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });

  it("keeps the file's time when mtime is 0 (now)", async () => {
    const before = Date.now();
    await upload(suite.agent.client, fileMessages(join(suite.dir, "now"), "x"));
    expect(statSync(join(suite.dir, "now")).mtimeMs).toBeGreaterThanOrEqual(before - 1000);
  });

  it("sets ownership: 1000:1000 when given, and 0:0 exactly with chown", async () => {
    const file = join(suite.dir, "owned");
    const dir = join(suite.dir, "owned-dir");
    const given = await upload(suite.agent.client, [
      ...fileMessages(file, "x", { uid: 1000, gid: 1000, mode: 0o4755 }),
      ...entryMessages({ path: dir, isDir: true, uid: 1000, gid: 1000 }),
    ]);
    expect(given.success).toBe(true);
    expect(statSync(file)).toMatchObject({ uid: 1000, gid: 1000 });
    // chown before chmod: the setuid bit survives.
    expect(statSync(file).mode & 0o7777).toBe(0o4755);
    expect(statSync(dir)).toMatchObject({ uid: 1000, gid: 1000 });

    // 0:0 without chown means "not given": the existing directory keeps its owner.
    await upload(suite.agent.client, entryMessages({ path: dir, isDir: true }));
    expect(statSync(dir)).toMatchObject({ uid: 1000, gid: 1000 });
    const root = await upload(suite.agent.client, [
      ...entryMessages({ path: dir, isDir: true, chown: true, uid: 0, gid: 0 }),
      ...fileMessages(file, "y", { chown: true, uid: 0, gid: 0 }),
    ]);
    expect(root.success).toBe(true);
    expect(statSync(dir)).toMatchObject({ uid: 0, gid: 0 });
    expect(statSync(file)).toMatchObject({ uid: 0, gid: 0 });
  });

  it("creates and atomically replaces symlinks, with owner and time", async () => {
    const link = join(suite.dir, "link");
    writeFileSync(link, "a file that becomes a link");
    const response = await upload(suite.agent.client, [
      ...entryMessages({
        path: link,
        isSymlink: true,
        linkTarget: "../somewhere/else",
        uid: 1000,
        gid: 1000,
        mtime: 1_650_000_000n,
      }),
      ...entryMessages({ path: join(suite.dir, "deep", "link2"), isSymlink: true, linkTarget: "/etc/hostname" }),
    ]);
    expect(response).toMatchObject({ success: true, entriesWritten: 2n, bytesWritten: 0n });
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe("../somewhere/else");
    expect(lstatSync(link)).toMatchObject({ uid: 1000, gid: 1000 });
    expect(lstatSync(link).mtimeMs).toBe(1_650_000_000_000);
    expect(readlinkSync(join(suite.dir, "deep", "link2"))).toBe("/etc/hostname");
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("writes 2,000 small files in one call", async () => {
    const tree = join(suite.dir, "tree");
    const messages = function* () {
      yield* entryMessages({ path: tree, isDir: true, mode: 0o750, mtime: 1_600_000_000n });
      for (let i = 0; i < 2000; i++) {
        yield* fileMessages(join(tree, `d${i % 20}`, `file-${i}`), `content of ${i}\n`, { mode: 0o640 });
      }
    };
    const started = performance.now();
    const response = await upload(suite.agent.client, messages());
    const elapsed = performance.now() - started;
    expect(response).toMatchObject({ success: true, entriesWritten: 2001n, error: "" });
    console.info(`2,000 files in one CopyToGuest call: ${elapsed.toFixed(0)} ms`);
    for (const i of [0, 999, 1999]) {
      const file = join(tree, `d${i % 20}`, `file-${i}`);
      expect(readFileSync(file, "utf8")).toBe(`content of ${i}\n`);
      expect(statSync(file).mode & 0o7777).toBe(0o640);
    }
    expect(readdirSync(tree).length).toBe(20);
    expect(statSync(tree).mtimeMs).toBe(1_600_000_000_000);
    expect(leftovers(tree)).toEqual([]);
  });

  it("stops at the first failing entry, keeping what was committed before it", async () => {
    writeFileSync(join(suite.dir, "blocker"), "a file where a directory is needed");
    const response = await upload(suite.agent.client, [
      ...entryMessages({ path: join(suite.dir, "kept-dir"), isDir: true, mtime: 1_300_000_000n }),
      ...fileMessages(join(suite.dir, "kept-dir", "first"), "1"),
      ...fileMessages(join(suite.dir, "blocker", "second"), "22"),
      ...fileMessages(join(suite.dir, "never"), "333"),
    ]);
    expect(response).toMatchObject({
      success: false,
      entriesWritten: 2n,
      bytesWritten: 1n,
      errorCode: "ENOTDIR",
      errorPath: join(suite.dir, "blocker", "second"),
    });
    expect(readFileSync(join(suite.dir, "kept-dir", "first"), "utf8")).toBe("1");
    // The committed directory still gets its time.
    expect(statSync(join(suite.dir, "kept-dir")).mtimeMs).toBe(1_300_000_000_000);
    expect(() => statSync(join(suite.dir, "never"))).toThrow(/ENOENT/);
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("commits nothing after an entry that fails when it is renamed into place", async () => {
    mkdirSync(join(suite.dir, "occupied", "child"), { recursive: true });
    const response = await upload(suite.agent.client, [
      ...fileMessages(join(suite.dir, "one"), "1"),
      // Staged and written fine; only the final rename over a directory fails.
      ...fileMessages(join(suite.dir, "occupied"), "22"),
      ...fileMessages(join(suite.dir, "three"), "333"),
      ...fileMessages(join(suite.dir, "four"), "4444"),
    ]);
    expect(response).toMatchObject({
      success: false,
      entriesWritten: 1n,
      bytesWritten: 1n,
      errorCode: "EISDIR",
      errorPath: join(suite.dir, "occupied"),
    });
    expect(readFileSync(join(suite.dir, "one"), "utf8")).toBe("1");
    expect(() => statSync(join(suite.dir, "three"))).toThrow(/ENOENT/);
    expect(() => statSync(join(suite.dir, "four"))).toThrow(/ENOENT/);
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("keeps stream order across batches of small files and streamed large files", async () => {
    const dir = join(suite.dir, "mixed");
    mkdirSync(join(dir, "occupied-250", "child"), { recursive: true });
    const big = Buffer.alloc(300 * 1024, "b");
    const messages = function* () {
      for (let i = 0; i < 400; i++) {
        // Past the first batch of small files, a streamed file, more small files, then
        // a rename that fails: nothing after it may appear, everything before it must.
        if (i === 150) yield* fileMessages(join(dir, "big"), big);
        yield* fileMessages(join(dir, i === 250 ? "occupied-250" : `small-${i}`), `${i}`);
      }
    };
    const response = await upload(suite.agent.client, messages());
    expect(response).toMatchObject({
      success: false,
      entriesWritten: 251n,
      errorCode: "EISDIR",
      errorPath: join(dir, "occupied-250"),
    });
    expect(readFileSync(join(dir, "big")).equals(big)).toBe(true);
    for (const i of [0, 127, 128, 149, 150, 249]) expect(readFileSync(join(dir, `small-${i}`), "utf8")).toBe(`${i}`);
    for (const i of [251, 255, 399]) expect(() => statSync(join(dir, `small-${i}`))).toThrow(/ENOENT/);
    expect(leftovers(dir)).toEqual([]);
  });

  it("commits small files on a memory-backed file system (tmpfs) too", async () => {
    // Where there is no disk to flush to; /dev/shm is tmpfs on Linux.
    const shm = mkdtempSync("/dev/shm/guestkit-copy-");
    try {
      const response = await upload(
        suite.agent.client,
        Array.from({ length: 300 }, (_, i) => fileMessages(join(shm, `f${i}`), `${i}`, { mode: 0o600 })).flat(),
      );
      expect(response).toMatchObject({ success: true, entriesWritten: 300n });
      for (const i of [0, 128, 299]) {
        expect(readFileSync(join(shm, `f${i}`), "utf8")).toBe(`${i}`);
        expect(statSync(join(shm, `f${i}`)).mode & 0o7777).toBe(0o600);
      }
      expect(leftovers(shm)).toEqual([]);
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });

  it("commits the small files whose end arrived when the stream is cancelled", async () => {
    const dir = join(suite.dir, "cut");
    mkdirSync(dir);
    const call = suite.agent.client.copyToGuest(new grpc.Metadata(), {}, () => undefined);
    call.on("error", () => undefined);
    for (let i = 0; i < 5; i++) {
      for (const message of fileMessages(join(dir, `done-${i}`), `${i}`)) {
        call.write(create(CopyToGuestRequestSchema, message));
      }
    }
    call.write(
      create(CopyToGuestRequestSchema, { request: { case: "start", value: { path: join(dir, "half"), size: 10n } } }),
    );
    call.write(create(CopyToGuestRequestSchema, { request: { case: "data", value: Buffer.from("12345") } }));
    // Staged under temporary names, waiting for their batch to fill or the stream to end.
    expect(await eventually(() => leftovers(dir).length === 5)).toBe(true);
    call.cancel();
    expect(await eventually(() => leftovers(dir).length === 0 && readdirSync(dir).length === 5)).toBe(true);
    for (let i = 0; i < 5; i++) expect(readFileSync(join(dir, `done-${i}`), "utf8")).toBe(`${i}`);
    expect(() => statSync(join(dir, "half"))).toThrow(/ENOENT/);
  });

  it("speaks the original framing byte for byte: a raw HTTP/2 upload and download, as an existing host sends them", async () => {
    const raw = await RawGrpcConnection.open(suite.agent.agent.socketPath);
    try {
      const target = join(suite.dir, "legacy.txt");
      const body = fileMessages(target, "from an old host", { mode: 0o600 }).map((message) =>
        grpcFrame(encodeRequest("copyToGuest", message)),
      );
      const uploaded = await raw.call(GUEST_METHODS.copyToGuest.path, { body });
      expect(uploaded.grpcStatus).toBe(0);
      expect(uploaded.messages).toHaveLength(1);
      expect(decodeResponse("copyToGuest", uploaded.messages[0] as Uint8Array)).toMatchObject({
        success: true,
        entriesWritten: 1n,
        bytesWritten: 16n,
      });
      expect(readFileSync(target, "utf8")).toBe("from an old host");
      expect(statSync(target).mode & 0o7777).toBe(0o600);

      const downloaded = await raw.call(GUEST_METHODS.copyFromGuest.path, {
        body: [grpcFrame(encodeRequest("copyFromGuest", { path: suite.dir }))],
      });
      expect(downloaded.grpcStatus).toBe(0);
      const cases = downloaded.messages.map((bytes) => decodeResponse("copyFromGuest", bytes).response.case);
      // Without the batch flag: only the original messages.
      expect(cases).toEqual(["header", "end", "header", "data", "end"]);
    } finally {
      await raw.close();
    }
  });

  it("commits a batch as the same entries sent one by one", async () => {
    const tree = join(suite.dir, "batched");
    const response = await new Promise<CopyToGuestResponse>((resolve, reject) => {
      const call = suite.agent.client.copyToGuest(new grpc.Metadata(), {}, (error, value) =>
        error || !value ? reject(error ?? new Error("no response")) : resolve(value),
      );
      call.write(
        create(CopyToGuestRequestSchema, {
          request: {
            case: "batch",
            value: {
              entries: [
                { start: { path: tree, isDir: true, mode: 0o750, mtime: 1_600_000_000n } },
                ...Array.from({ length: 300 }, (_, i) => ({
                  start: { path: join(tree, `d${i % 3}`, `f${i}`), size: BigInt(`${i}`.length), mode: 0o604 },
                  data: Buffer.from(`${i}`),
                })),
                { start: { path: join(tree, "link"), isSymlink: true, linkTarget: "d0/f0" } },
              ],
            },
          },
        }),
      );
      // Classic entries after a batch, in the same stream.
      for (const message of fileMessages(join(tree, "after"), "classic")) {
        call.write(create(CopyToGuestRequestSchema, message));
      }
      call.end();
    });
    expect(response).toMatchObject({ success: true, entriesWritten: 303n, bytesWritten: 797n });
    for (const i of [0, 150, 299]) {
      const file = join(tree, `d${i % 3}`, `f${i}`);
      expect(readFileSync(file, "utf8")).toBe(`${i}`);
      expect(statSync(file).mode & 0o7777).toBe(0o604);
    }
    expect(readlinkSync(join(tree, "link"))).toBe("d0/f0");
    expect(readFileSync(join(tree, "after"), "utf8")).toBe("classic");
    expect(statSync(tree).mode & 0o7777).toBe(0o750);
    expect(statSync(tree).mtimeMs).toBe(1_600_000_000_000);
    expect(leftovers(tree)).toEqual([]);
  });

  it("checks every batched entry as it checks a start, and names the entry that failed", async () => {
    const dir = suite.dir;
    writeFileSync(join(dir, "precious"), "old content");
    const batch = (entries: BatchEntryInit[]): RequestInit => ({ request: { case: "batch", value: { entries } } });
    const file = (name: string, data: string, size = data.length): BatchEntryInit => ({
      start: { path: name.startsWith("/") || name.startsWith("rel") ? name : join(dir, name), size: BigInt(size) },
      data: Buffer.from(data),
    });

    const badPath = await upload(suite.agent.client, [batch([file("kept", "1"), file("relative/x", "2")])]);
    expect(badPath).toMatchObject({ success: false, errorCode: "EINVAL", errorPath: "relative/x", entriesWritten: 1n });
    expect(readFileSync(join(dir, "kept"), "utf8")).toBe("1");

    const short = await upload(suite.agent.client, [batch([file("precious", "new", 10)])]);
    expect(short).toMatchObject({ success: false, errorCode: "SIZE_MISMATCH", errorPath: join(dir, "precious") });
    const long = await upload(suite.agent.client, [batch([file("precious", "new content", 2)])]);
    expect(long).toMatchObject({ success: false, errorCode: "SIZE_MISMATCH", errorPath: join(dir, "precious") });
    expect(readFileSync(join(dir, "precious"), "utf8")).toBe("old content");

    const dataForDirectory = await upload(suite.agent.client, [
      batch([{ start: { path: join(dir, "d"), isDir: true }, data: Buffer.from("x") }]),
    ]);
    expect(dataForDirectory).toMatchObject({ success: false, errorCode: "PROTOCOL", errorPath: join(dir, "d") });

    const large = await upload(suite.agent.client, [batch([file("large", "x".repeat(SMALL_FILE_BYTES + 1))])]);
    expect(large).toMatchObject({ success: false, errorCode: "PROTOCOL", errorPath: join(dir, "large") });
    expect(large.error).toMatch(/in a batch/);

    const tooMany = await upload(suite.agent.client, [
      batch(Array.from({ length: MAX_BATCH_ENTRIES + 1 }, (_, i) => file(`many-${i}`, ""))),
    ]);
    expect(tooMany).toMatchObject({ success: false, errorCode: "PROTOCOL", entriesWritten: 0n });
    const tooBig = await upload(suite.agent.client, [
      batch(Array.from({ length: 5 }, (_, i) => file(`big-${i}`, "x".repeat(MAX_BATCH_BYTES / 4)))),
    ]);
    expect(tooBig).toMatchObject({ success: false, errorCode: "PROTOCOL", errorPath: join(dir, "big-4") });

    const insideEntry = await upload(suite.agent.client, [
      { request: { case: "start", value: { path: join(dir, "open"), size: 1n } } },
      batch([file("inner", "1")]),
    ]);
    expect(insideEntry).toMatchObject({ success: false, errorCode: "PROTOCOL", errorPath: join(dir, "open") });
    const noStart = await upload(suite.agent.client, [batch([{ data: Buffer.from("x") }])]);
    expect(noStart).toMatchObject({ success: false, errorCode: "PROTOCOL" });

    expect(readdirSync(dir).sort()).toEqual(["big-0", "big-1", "big-2", "big-3", "kept", "precious"]);
    expect(leftovers(dir)).toEqual([]);
  });

  it("commits the batched entries of a cancelled stream, never the entry in progress", async () => {
    const dir = join(suite.dir, "cut");
    mkdirSync(dir);
    writeFileSync(join(dir, "precious"), "old content");
    const call = suite.agent.client.copyToGuest(new grpc.Metadata(), {}, () => undefined);
    call.on("error", () => undefined);
    const entries = Array.from({ length: 5 }, (_, i) => ({
      start: { path: join(dir, `done-${i}`), size: 1n },
      data: Buffer.from(`${i}`),
    }));
    call.write(create(CopyToGuestRequestSchema, { request: { case: "batch", value: { entries } } }));
    call.write(
      create(CopyToGuestRequestSchema, {
        request: { case: "start", value: { path: join(dir, "precious"), size: 10n } },
      }),
    );
    call.write(create(CopyToGuestRequestSchema, { request: { case: "data", value: Buffer.from("12345") } }));
    expect(await eventually(() => leftovers(dir).length === 5)).toBe(true);
    call.cancel();
    expect(await eventually(() => leftovers(dir).length === 0 && readdirSync(dir).length === 6)).toBe(true);
    for (let i = 0; i < 5; i++) expect(readFileSync(join(dir, `done-${i}`), "utf8")).toBe(`${i}`);
    expect(readFileSync(join(dir, "precious"), "utf8")).toBe("old content");
  });

  it("streams a large file to disk without holding it in memory", async () => {
    const target = join(suite.dir, "big");
    const size = 1024 * 1024 * 1024;
    const chunk = Buffer.alloc(256 * 1024, 7);
    const messages = function* (): Generator<RequestInit> {
      yield { request: { case: "start" as const, value: { path: target, size: BigInt(size) } } };
      for (let sent = 0; sent < size; sent += chunk.length) yield { request: { case: "data" as const, value: chunk } };
      yield { request: { case: "end" as const, value: {} } };
    };
    const started = performance.now();
    const response = await upload(suite.agent.client, messages());
    const seconds = (performance.now() - started) / 1000;
    expect(response).toMatchObject({ success: true, bytesWritten: BigInt(size) });
    expect(statSync(target).size).toBe(size);
    const status = readFileSync(`/proc/${suite.agent.agent.pid}/status`, "utf8");
    const peakBytes = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
    console.info(`1 GiB upload: ${seconds.toFixed(1)} s; agent peak RSS ${(peakBytes / 2 ** 20).toFixed(0)} MiB`);
    // Memory is bounded by flow control and GC, not by the file: far below its size.
    expect(peakBytes).toBeLessThan(size / 2);
  }, 120_000);
});

describe("CopyToGuest as an unprivileged agent", () => {
  let agent: TestAgent;
  let temp: ReturnType<typeof makeTempDir>;
  beforeAll(async () => {
    agent = await startTestAgent({ asNobody: true });
    temp = makeTempDir();
  });
  afterAll(async () => {
    await agent.stop();
    temp.remove();
  });

  it("reports a permission failure in-band with its errno name", async () => {
    const target = join(temp.dir, "not-allowed");
    const response = await upload(agent.client, fileMessages(target, "x"));
    expect(response).toMatchObject({ success: false, errorCode: "EACCES", errorPath: target });
    expect(response.error).toMatch(/permission denied/i);
  });

  it("reports a failed chown in-band and leaves no temporary file", async () => {
    const dir = join(temp.dir, "writable");
    mkdirSync(dir);
    chownSync(dir, 65534, 65534);
    const target = join(dir, "file");
    const response = await upload(agent.client, fileMessages(target, "x", { uid: 0, gid: 0, chown: true }));
    expect(response).toMatchObject({ success: false, errorCode: "EPERM", errorPath: target });
    expect(readdirSync(dir)).toEqual([]);
  });
});
