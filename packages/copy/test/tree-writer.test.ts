// The staged-file writer on temp directories, without gRPC: framing and bounds, atomic
// commits in stream order, directories finished deepest first, and the two kinds of
// path policy (absolute paths made as needed; relative names with no link traversal).
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statfsSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, SMALL_FILE_BYTES } from "@guestkit/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type EntryAttributes,
  EntryError,
  type EntryHeader,
  type EntryKind,
  type PathPolicy,
  TEMP_MARKER,
  TreeWriter,
} from "../src/index.js";

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "guestkit-copy-writer-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function header(path: string, fields: Partial<EntryHeader> = {}): EntryHeader {
  return {
    path,
    mode: 0,
    isDir: false,
    isSymlink: false,
    linkTarget: "",
    size: 0n,
    mtime: 0n,
    mtimeNanos: 0,
    uid: 0,
    gid: 0,
    ...fields,
  };
}

function attributesOf(entry: EntryHeader, kind: EntryKind): EntryAttributes {
  return {
    ...(kind === "symlink" ? {} : { mode: entry.mode || (kind === "dir" ? 0o755 : 0o644) }),
    ...(entry.mtime === 0n ? {} : { mtime: { seconds: entry.mtime, nanos: entry.mtimeNanos } }),
  };
}

/** Absolute paths, parents made as needed, fsync wanted: the agent's kind of policy. */
function absolutePolicy(): PathPolicy<EntryHeader> {
  return {
    durable: true,
    followLinks: true,
    locate: (entry) => ({ local: entry.path, linkDepth: 0 }),
    enterParents: (parent) => {
      mkdirSync(parent, { recursive: true });
    },
    attributes: attributesOf,
  };
}

/** Names relative to `root`, every directory passed through checked to be a real one: the host's kind. */
function containedPolicy(root: string): PathPolicy<EntryHeader> {
  return {
    durable: false,
    followLinks: false,
    locate: (entry) => {
      if (entry.path.split("/").includes("..")) throw EntryError.unsafe(entry.path, "`..` in path");
      return { local: join(root, entry.path), linkDepth: entry.path.split("/").length - 1 };
    },
    enterParents: (parent, top, entryPath, enter) => {
      let local = top?.local ?? root;
      if (parent === local) return;
      for (const name of relative(local, parent).split("/")) {
        local = join(local, name);
        const stats = lstatSync(local);
        if (stats.isSymbolicLink()) throw EntryError.unsafe(entryPath, `goes through the symbolic link ${name}`);
        enter({ local, path: relative(root, local), final: { mode: stats.mode & 0o7777 } });
      }
    },
    attributes: attributesOf,
    linkProblem: (target) => (target.startsWith("/") ? "absolute symlink target" : undefined),
  };
}

function leftovers(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: "utf8" }).filter((name) => name.includes(TEMP_MARKER));
}

async function writeFile(
  writer: TreeWriter,
  path: string,
  content: string | Buffer,
  fields: Partial<EntryHeader> = {},
) {
  const bytes = Buffer.from(content);
  await writer.begin(header(path, { size: BigInt(bytes.length), ...fields }));
  if (bytes.length > 0) await writer.write(bytes);
  await writer.end();
}

async function failure(action: () => Promise<unknown>): Promise<EntryError> {
  const error = await action().then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(EntryError);
  return error as EntryError;
}

describe("TreeWriter with an absolute-path policy", () => {
  it("writes small and streamed files, symlinks and directories, times exact and deepest first", async () => {
    const writer = new TreeWriter(absolutePolicy());
    const top = join(dir, "top");
    const big = Buffer.alloc(SMALL_FILE_BYTES + 1, 7);
    await writer.begin(header(top, { isDir: true, mode: 0o750, mtime: 1_500_000_000n, mtimeNanos: 500_000_000 }));
    await writer.end();
    await writer.begin(header(join(top, "sub"), { isDir: true, mtime: 1_500_000_001n }));
    await writer.end();
    await writeFile(writer, join(top, "sub", "small"), "hello", { mode: 0o600, mtime: 1_700_000_000n });
    await writeFile(writer, join(top, "big"), big);
    await writer.begin(header(join(top, "link"), { isSymlink: true, linkTarget: "sub/small" }));
    await writer.end();
    // New directories stay private until the stream leaves them.
    expect(statSync(top).mode & 0o777).toBe(0o700);
    await writer.finish();

    expect(writer.entriesWritten).toBe(5);
    expect(writer.bytesWritten).toBe(BigInt(5 + big.length));
    expect(readFileSync(join(top, "sub", "small"), "utf8")).toBe("hello");
    expect(statSync(join(top, "sub", "small")).mode & 0o7777).toBe(0o600);
    expect(readFileSync(join(top, "big")).equals(big)).toBe(true);
    expect(readlinkSync(join(top, "link"))).toBe("sub/small");
    expect(statSync(top).mode & 0o7777).toBe(0o750);
    // Written into after `sub` was finished, and still its own time.
    expect(statSync(top, { bigint: true }).mtimeNs).toBe(1_500_000_000_500_000_000n);
    expect(statSync(join(top, "sub")).mtimeMs).toBe(1_500_000_001_000);
    expect(leftovers(dir)).toEqual([]);
  });

  it("refuses framing errors with PROTOCOL and sizes with SIZE_MISMATCH, leaving nothing", async () => {
    const target = join(dir, "f");
    const cases: Array<[string, (writer: TreeWriter) => Promise<unknown>, string, RegExp]> = [
      ["data first", (w) => w.write(Buffer.from("x")), "PROTOCOL", /data arrived before any start message/],
      ["end first", (w) => w.end(), "PROTOCOL", /end message arrived before any start message/],
      [
        "start in a start",
        async (w) => {
          await w.begin(header(target, { size: 1n }));
          await w.begin(header(target));
        },
        "PROTOCOL",
        /new start arrived before this entry's end/,
      ],
      [
        "data for a directory",
        async (w) => {
          await w.begin(header(target, { isDir: true }));
          await w.write(Buffer.from("x"));
        },
        "PROTOCOL",
        /data arrived for a directory/,
      ],
      [
        "too much",
        (w) => writeFile(w, target, "abc", { size: 2n }),
        "SIZE_MISMATCH",
        /more data than the declared size of 2/,
      ],
      [
        "too little",
        (w) => writeFile(w, target, "a", { size: 2n }),
        "SIZE_MISMATCH",
        /1 of the declared 2 bytes arrived/,
      ],
      [
        "no end",
        async (w) => {
          await w.begin(header(target, { size: 0n }));
          await w.finish();
        },
        "PROTOCOL",
        /stream ended before this entry's end/,
      ],
    ];
    for (const [name, action, code, message] of cases) {
      const writer = new TreeWriter(absolutePolicy());
      const error = await failure(() => action(writer));
      await writer.abort();
      expect(error.code, name).toBe(code);
      expect(error.message, name).toMatch(message);
      expect(readdirSync(dir), name).toEqual([]);
    }
  });

  it("checks headers the same way for every entry", async () => {
    const cases: Array<[Partial<EntryHeader>, RegExp]> = [
      [{ size: -1n }, /negative size/],
      [{ isDir: true, isSymlink: true }, /both a directory and a symlink/],
      [{ isSymlink: true }, /needs a link_target/],
      [{ isSymlink: true, linkTarget: "a\0b" }, /NUL/],
      [{ mtimeNanos: 1_000_000_000 }, /not below one second/],
      [{ mtime: -1n }, /before 1970/],
      [{ mtime: 2n ** 60n }, /out of range/],
    ];
    for (const [fields, message] of cases) {
      const error = await failure(() => new TreeWriter(absolutePolicy()).begin(header(join(dir, "x"), fields)));
      expect(error).toMatchObject({ reason: "protocol", code: "EINVAL" });
      expect(error.message).toMatch(message);
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it("commits in stream order: nothing after a file whose rename fails, everything before it", async () => {
    mkdirSync(join(dir, "occupied", "child"), { recursive: true });
    const writer = new TreeWriter(absolutePolicy());
    await writeFile(writer, join(dir, "one"), "1");
    await writeFile(writer, join(dir, "big"), Buffer.alloc(SMALL_FILE_BYTES + 10, 1));
    const error = await failure(async () => {
      await writeFile(writer, join(dir, "occupied"), "2");
      await writeFile(writer, join(dir, "three"), "3");
      await writer.finish();
    });
    await writer.abort();
    expect(error).toMatchObject({ reason: "destination", path: join(dir, "occupied") });
    expect(["EISDIR", "ENOTEMPTY", "EEXIST"]).toContain(error.code);
    expect(writer.entriesWritten).toBe(2);
    expect(readdirSync(dir).sort()).toEqual(["big", "occupied", "one"]);
    expect(leftovers(dir)).toEqual([]);
  });

  it("on abort commits the files whose end arrived and drops the one in progress", async () => {
    writeFileSync(join(dir, "precious"), "old");
    const writer = new TreeWriter(absolutePolicy());
    for (let i = 0; i < 3; i++) await writeFile(writer, join(dir, `done-${i}`), `${i}`);
    await writer.begin(header(join(dir, "precious"), { size: BigInt(SMALL_FILE_BYTES + 1) }));
    await writer.write(Buffer.from("partial"));
    await writer.abort();
    expect(readdirSync(dir).sort()).toEqual(["done-0", "done-1", "done-2", "precious"]);
    expect(readFileSync(join(dir, "precious"), "utf8")).toBe("old");
    expect(leftovers(dir)).toEqual([]);
  });

  it("a dropped file is never committed and its end closes nothing", async () => {
    const writer = new TreeWriter(absolutePolicy());
    const path = join(dir, "shrunk");
    await writer.begin(header(path, { size: BigInt(SMALL_FILE_BYTES + 100) }));
    await writer.write(Buffer.alloc(100));
    expect(writer.dropFile("another")).toBeUndefined();
    expect(writer.dropFile(path)).toBe(100);
    await writer.end();
    await writeFile(writer, join(dir, "next"), "n");
    await writer.finish();
    expect(readdirSync(dir)).toEqual(["next"]);
  });

  it("bounds a batch, writing its entries before the one that breaks a bound", async () => {
    const file = (name: string, bytes: number) => ({
      header: header(join(dir, name), { size: BigInt(bytes) }),
      data: Buffer.alloc(bytes, 1),
    });
    const tooMany = Array.from({ length: MAX_BATCH_ENTRIES + 1 }, (_, i) => file(`many-${i}`, 0));
    expect((await failure(() => new TreeWriter(absolutePolicy()).batch(tooMany))).message).toMatch(/a batch of 1025/);
    expect(readdirSync(dir)).toEqual([]);

    const writer = new TreeWriter(absolutePolicy());
    const tooBig = Array.from({ length: 5 }, (_, i) => file(`big-${i}`, MAX_BATCH_BYTES / 4));
    const error = await failure(() => writer.batch(tooBig));
    await writer.abort();
    expect(error).toMatchObject({ code: "PROTOCOL", path: join(dir, "big-4") });
    expect(readdirSync(dir).sort()).toEqual(["big-0", "big-1", "big-2", "big-3"]);

    const large = await failure(() => new TreeWriter(absolutePolicy()).batch([file("large", SMALL_FILE_BYTES + 1)]));
    expect(large.message).toMatch(/a file of 65537 bytes in a batch/);
    const headless = await failure(() => new TreeWriter(absolutePolicy()).batch([{ data: Buffer.alloc(0) }]));
    expect(headless.message).toMatch(/without its header/);
  });
});

describe("TreeWriter with a contained policy", () => {
  it("refuses to go through a symlink and an unsafe link target, keeping what came before", async () => {
    const outside = join(dir, "outside");
    const root = join(dir, "root");
    mkdirSync(outside);
    mkdirSync(root);
    symlinkSync(outside, join(root, "link"));
    const writer = new TreeWriter(containedPolicy(root));
    await writeFile(writer, "kept", "k");
    const through = await failure(() => writeFile(writer, "link/evil", "x"));
    expect(through).toMatchObject({ reason: "unsafe-entry", message: expect.stringMatching(/symbolic link link/) });
    await writer.abort();
    expect(readdirSync(outside)).toEqual([]);

    const again = new TreeWriter(containedPolicy(root));
    const link = await failure(() => again.begin(header("abs", { isSymlink: true, linkTarget: "/etc" })));
    expect(link).toMatchObject({ reason: "unsafe-entry", message: expect.stringMatching(/absolute symlink target/) });
    await again.abort();
    expect(readdirSync(root).sort()).toEqual(["kept", "link"]);
  });

  it("refuses a directory entry over a symlink or a file", async () => {
    const root = join(dir, "root");
    mkdirSync(root);
    symlinkSync(dir, join(root, "link"));
    writeFileSync(join(root, "file"), "");
    const overLink = new TreeWriter(containedPolicy(root));
    await overLink.begin(header("link", { isDir: true }));
    expect(await failure(() => overLink.end())).toMatchObject({ reason: "unsafe-entry" });
    const overFile = new TreeWriter(containedPolicy(root));
    await overFile.begin(header("file", { isDir: true }));
    expect(await failure(() => overFile.end())).toMatchObject({ reason: "destination", code: "EEXIST" });
  });

  it("gives a directory entered again its attributes back when it is left again", async () => {
    const root = join(dir, "root");
    mkdirSync(root);
    const writer = new TreeWriter(containedPolicy(root));
    await writer.begin(header("a", { isDir: true, mode: 0o555, mtime: 1_400_000_000n }));
    await writer.end();
    await writer.begin(header("b", { isDir: true }));
    await writer.end();
    // Out of order: back into `a`, which was finished (read-only) when `b` came.
    await writeFile(writer, "a/late", "l");
    await writer.finish();
    expect(readFileSync(join(root, "a", "late"), "utf8")).toBe("l");
    expect(statSync(join(root, "a")).mode & 0o7777).toBe(0o555);
    expect(leftovers(root)).toEqual([]);
  });
});

it("names temporary files .NAME.guestkit-TAG-N beside the target, within NAME_MAX", async () => {
  const { temporaryNameFor } = await import("../src/staged-file.js");
  const name = temporaryNameFor(join(dir, "file.txt"));
  expect(dirname(name)).toBe(dir);
  expect(name).toMatch(/\/\.file\.txt\.guestkit-[0-9a-f]{12}-\d+$/);
  expect(
    Buffer.byteLength(
      temporaryNameFor(join(dir, "n".repeat(255)))
        .split("/")
        .pop() as string,
    ),
  ).toBeLessThan(256);
  expect(temporaryNameFor(join(dir, "x"))).not.toBe(temporaryNameFor(join(dir, "x")));
});

it("holds small files for a batched fsync where it matters, and renames them at once where it does not", async () => {
  const inMemory = statfsSync(dir).type === 0x01021994;
  const writer = new TreeWriter(absolutePolicy());
  for (let i = 0; i < 3; i++) await writeFile(writer, join(dir, `f${i}`), `${i}`);
  expect(leftovers(dir)).toHaveLength(inMemory ? 0 : 3);
  await writer.finish();
  expect(readdirSync(dir).sort()).toEqual(["f0", "f1", "f2"]);

  // A policy that wants no fsync (the host's) renames each file when its end arrives.
  const host = new TreeWriter({ ...absolutePolicy(), durable: false });
  await writeFile(host, join(dir, "now"), "n");
  expect(readFileSync(join(dir, "now"), "utf8")).toBe("n");
  await host.finish();
});
