import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  chmodSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CHUNK_SIZE,
  type CopyFromGuestEnd,
  CopyFromGuestEndSchema,
  type CopyFromGuestError,
  type CopyFromGuestHeader,
  CopyFromGuestRequestSchema,
  type CopyFromGuestResponse,
  type CopyFromGuestSkipped,
  MAX_BATCH_ENTRIES,
  SMALL_FILE_BYTES,
} from "@guestkit/protocol";
import { describe, expect, it } from "vitest";
import { download, eventually, openDescriptorCount, type TestAgent, useTestAgent } from "./copy-support.js";

interface ReceivedEntry {
  header: CopyFromGuestHeader;
  data: Buffer;
  chunkSizes: number[];
  end: CopyFromGuestEnd;
  /** It came whole in a `batch` message. */
  batched: boolean;
}

interface Transfer {
  entries: ReceivedEntry[];
  skipped: CopyFromGuestSkipped[];
  errors: CopyFromGuestError[];
  final: CopyFromGuestEnd | undefined;
  /** Entries per `batch` message. */
  batchSizes: number[];
}

/**
 * Checks the framing (header, data..., end; final only on the last end; batches only
 * between entries, and then a bare final end) and groups the messages.
 */
function collate(messages: CopyFromGuestResponse[]): Transfer {
  const transfer: Transfer = { entries: [], skipped: [], errors: [], final: undefined, batchSizes: [] };
  let afterBatch = false;
  let open: Omit<ReceivedEntry, "end" | "batched"> & { parts: Buffer[] } = undefined as never;
  for (const [index, message] of messages.entries()) {
    const { response } = message;
    expect(transfer.final, `message ${index} after the final end`).toBeUndefined();
    switch (response.case) {
      case "header":
        expect(open, `header ${response.value.path} inside another entry`).toBeUndefined();
        open = { header: response.value, data: Buffer.alloc(0), chunkSizes: [], parts: [] };
        break;
      case "data":
        expect(open, "data outside an entry").toBeDefined();
        open.parts.push(Buffer.from(response.value));
        open.chunkSizes.push(response.value.length);
        break;
      case "end": {
        if (open === undefined && afterBatch && response.value.final) {
          transfer.final = response.value;
          break;
        }
        expect(open, "end outside an entry").toBeDefined();
        const { parts, ...entry } = open;
        transfer.entries.push({ ...entry, data: Buffer.concat(parts), end: response.value, batched: false });
        if (response.value.final) transfer.final = response.value;
        open = undefined as never;
        break;
      }
      case "skipped":
        transfer.skipped.push(response.value);
        break;
      case "batch":
        expect(open, "a batch inside an entry").toBeUndefined();
        transfer.batchSizes.push(response.value.entries.length);
        for (const { header, data } of response.value.entries) {
          expect(header).toBeDefined();
          const whole = Buffer.from(data);
          expect(BigInt(whole.length), `${header?.path}: all of its data`).toBe(header?.size);
          transfer.entries.push({
            header: header as CopyFromGuestHeader,
            data: whole,
            chunkSizes: [whole.length],
            end: create(CopyFromGuestEndSchema, { final: false }),
            batched: true,
          });
        }
        break;
      case "error":
        transfer.errors.push(response.value);
        break;
      default:
        throw new Error(`unexpected message ${JSON.stringify(message)}`);
    }
    afterBatch = response.case === "batch" || (afterBatch && response.case === "skipped");
  }
  expect(open, "stream ended inside an entry").toBeUndefined();
  return transfer;
}

function byPath(transfer: Transfer): Map<string, ReceivedEntry> {
  return new Map(transfer.entries.map((entry) => [entry.header.path, entry]));
}

/**
 * A download that pauses after the first message `pauseWhen` accepts, runs `whilePaused`
 * (the agent is then held back by flow control), and resumes.
 */
function downloadWithPause(
  agent: TestAgent,
  path: string,
  pauseWhen: (message: CopyFromGuestResponse) => boolean,
  whilePaused: () => Promise<void> | void,
): Promise<CopyFromGuestResponse[]> {
  return new Promise((resolve, reject) => {
    const messages: CopyFromGuestResponse[] = [];
    const call = agent.client.copyFromGuest(create(CopyFromGuestRequestSchema, { path }), new grpc.Metadata());
    let paused = false;
    call.on("data", (message: CopyFromGuestResponse) => {
      messages.push(message);
      if (paused || !pauseWhen(message)) return;
      paused = true;
      call.pause();
      Promise.resolve(whilePaused()).then(() => call.resume(), reject);
    });
    call.on("error", reject);
    call.on("end", () => resolve(messages));
  });
}

describe("CopyFromGuest", () => {
  const suite = useTestAgent();

  it("sends one file with its exact metadata in chunks of at most CHUNK_SIZE", async () => {
    const file = join(suite.dir, "file.bin");
    const content = randomBytes(2 * CHUNK_SIZE + 12345);
    writeFileSync(file, content);
    execFileSync("chown", ["1000:1001", file]);
    execFileSync("chmod", ["4755", file]);
    execFileSync("touch", ["-m", "-d", "@1700000000.123456789", file]);

    const transfer = collate(await download(suite.agent.client, file));
    expect(transfer.entries).toHaveLength(1);
    const [entry] = transfer.entries as [ReceivedEntry];
    expect(entry.header).toMatchObject({
      path: "file.bin",
      isDir: false,
      isSymlink: false,
      size: BigInt(content.length),
      mode: 0o4755,
      mtime: 1700000000n,
      mtimeNanos: 123456789,
      uid: 1000,
      gid: 1001,
    });
    expect(entry.data.equals(content)).toBe(true);
    expect(Math.max(...entry.chunkSizes)).toBeLessThanOrEqual(CHUNK_SIZE);
    expect(entry.end).toMatchObject({ final: true, partial: false });
    expect(transfer.skipped).toEqual([]);
  });

  it("sends a tree depth-first, each directory before its contents, symlinks as links", async () => {
    const root = join(suite.dir, "root");
    mkdirSync(join(root, "sub", "deeper"), { recursive: true });
    mkdirSync(join(root, "empty"));
    writeFileSync(join(root, "a.txt"), "A");
    writeFileSync(join(root, "sub", "b.txt"), "BB");
    writeFileSync(join(root, "sub", "deeper", "c.txt"), "CCC");
    symlinkSync("a.txt", join(root, "link-to-a"));
    symlinkSync("sub", join(root, "link-to-sub"));
    symlinkSync("/nowhere/at/all", join(root, "dangling"));
    chmodSync(root, 0o1777);
    chmodSync(join(root, "sub"), 0o2755);
    execFileSync("touch", ["-m", "-d", "@1600000000.987654321", join(root, "sub")]);

    const transfer = collate(await download(suite.agent.client, root));
    const paths = transfer.entries.map((entry) => entry.header.path);
    expect([...paths].sort()).toEqual(
      [
        "root",
        "root/a.txt",
        "root/dangling",
        "root/empty",
        "root/link-to-a",
        "root/link-to-sub",
        "root/sub",
        "root/sub/b.txt",
        "root/sub/deeper",
        "root/sub/deeper/c.txt",
      ].sort(),
    );
    expect(paths[0]).toBe("root");
    for (const [index, path] of paths.entries()) {
      const parent = path.slice(0, path.lastIndexOf("/"));
      if (parent) expect(paths.indexOf(parent), `${parent} before ${path}`).toBeLessThan(index);
    }
    // Depth-first: a directory's contents come together, right after it.
    const sub = paths.indexOf("root/sub");
    expect(paths.slice(sub, sub + 4).sort()).toEqual(
      ["root/sub", "root/sub/b.txt", "root/sub/deeper", "root/sub/deeper/c.txt"].sort(),
    );

    const entries = byPath(transfer);
    expect(entries.get("root")?.header).toMatchObject({ isDir: true, mode: 0o1777 });
    expect(entries.get("root/sub")?.header).toMatchObject({
      isDir: true,
      mode: 0o2755,
      mtime: 1600000000n,
      mtimeNanos: 987654321,
    });
    expect(entries.get("root/sub/deeper/c.txt")?.data.toString()).toBe("CCC");
    expect(entries.get("root/link-to-a")?.header).toMatchObject({ isSymlink: true, linkTarget: "a.txt", size: 0n });
    expect(entries.get("root/link-to-sub")?.header).toMatchObject({ isSymlink: true, isDir: false, linkTarget: "sub" });
    expect(entries.get("root/dangling")?.header).toMatchObject({ isSymlink: true, linkTarget: "/nowhere/at/all" });
    expect(entries.get("root/link-to-a")?.data.length).toBe(0);

    expect(transfer.entries.filter((entry) => entry.end.final)).toHaveLength(1);
    expect(transfer.entries.at(-1)?.end).toMatchObject({ final: true, partial: false });
    expect(transfer.skipped).toEqual([]);
  });

  it("follows links when asked: a link to a directory brings its contents, loops and dangling links are skipped", async () => {
    const root = join(suite.dir, "root");
    mkdirSync(join(root, "sub"), { recursive: true });
    writeFileSync(join(root, "a.txt"), "A");
    writeFileSync(join(root, "sub", "b.txt"), "BB");
    symlinkSync("a.txt", join(root, "link-to-a"));
    symlinkSync("sub", join(root, "link-to-sub"));
    symlinkSync("..", join(root, "sub", "up"));
    symlinkSync("nowhere", join(root, "dangling"));

    const transfer = collate(await download(suite.agent.client, root, true));
    const entries = byPath(transfer);
    expect(entries.get("root/link-to-a")?.header).toMatchObject({ isSymlink: false, size: 1n });
    expect(entries.get("root/link-to-a")?.data.toString()).toBe("A");
    expect(entries.get("root/link-to-sub")?.header).toMatchObject({ isDir: true, isSymlink: false });
    expect(entries.get("root/link-to-sub/b.txt")?.data.toString()).toBe("BB");
    expect(entries.has("root/sub/b.txt")).toBe(true);

    const skipped = new Map(transfer.skipped.map((skip) => [skip.path, skip]));
    // root/sub/up is root itself; root/link-to-sub/up is root too.
    expect(skipped.get("root/sub/up")).toMatchObject({ code: "ELOOP" });
    expect(skipped.get("root/link-to-sub/up")).toMatchObject({ code: "ELOOP" });
    expect(skipped.get("root/dangling")).toMatchObject({ code: "ENOENT" });
    expect(transfer.final).toMatchObject({ final: true, partial: true });
  });

  it("skips FIFOs, sockets and devices without opening them, and goes on", async () => {
    const root = join(suite.dir, "root");
    mkdirSync(root);
    writeFileSync(join(root, "before.txt"), "before");
    execFileSync("mkfifo", [join(root, "fifo")]);
    execFileSync("mknod", [join(root, "null-device"), "c", "1", "3"]);
    mkdirSync(join(root, "z"));
    writeFileSync(join(root, "z", "after.txt"), "after");
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(join(root, "socket"), resolve));
    try {
      const transfer = collate(await download(suite.agent.client, root));
      const skipped = new Map(transfer.skipped.map((skip) => [skip.path, skip]));
      expect(skipped.get("root/fifo")).toMatchObject({ code: "SPECIAL_FILE" });
      expect(skipped.get("root/fifo")?.reason).toMatch(/FIFO/);
      expect(skipped.get("root/socket")).toMatchObject({ code: "SPECIAL_FILE" });
      expect(skipped.get("root/null-device")).toMatchObject({ code: "SPECIAL_FILE" });
      expect(skipped.size).toBe(3);
      const entries = byPath(transfer);
      expect(entries.get("root/before.txt")?.data.toString()).toBe("before");
      expect(entries.get("root/z/after.txt")?.data.toString()).toBe("after");
      expect(transfer.final).toMatchObject({ final: true, partial: true });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("reports a problem with the root as one error message, not a gRPC status", async () => {
    const missing = join(suite.dir, "missing");
    const notFound = await download(suite.agent.client, missing);
    expect(notFound).toHaveLength(1);
    expect(notFound[0]?.response).toMatchObject({ case: "error", value: { path: missing, code: "ENOENT" } });

    const relative = collate(await download(suite.agent.client, "relative/path"));
    expect(relative.errors[0]).toMatchObject({ code: "EINVAL" });
    expect(relative.errors[0]?.message).toMatch(/not absolute/);

    const nul = collate(await download(suite.agent.client, `${suite.dir}/a\0b`));
    expect(nul.errors[0]).toMatchObject({ code: "EINVAL" });
    expect(nul.errors[0]?.message).toMatch(/NUL/);

    const fifo = join(suite.dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    const special = collate(await download(suite.agent.client, fifo));
    expect(special.errors[0]).toMatchObject({ code: "SPECIAL_FILE", path: fifo });
    expect(special.entries).toEqual([]);
  });

  it("sends a symlink root as a link, or what it points to with follow_links", async () => {
    writeFileSync(join(suite.dir, "target"), "T");
    const link = join(suite.dir, "link");
    symlinkSync("target", link);
    const asLink = collate(await download(suite.agent.client, link));
    expect(asLink.entries).toHaveLength(1);
    expect(asLink.entries[0]?.header).toMatchObject({ path: "link", isSymlink: true, linkTarget: "target" });
    expect(asLink.final).toMatchObject({ final: true, partial: false });

    const followed = collate(await download(suite.agent.client, link, true));
    expect(followed.entries[0]?.header).toMatchObject({ path: "link", isSymlink: false, size: 1n });
    expect(followed.entries[0]?.data.toString()).toBe("T");
  });

  it("names the root by its real name when the path ends in .. or /", async () => {
    const root = join(suite.dir, "named");
    mkdirSync(join(root, "inner"), { recursive: true });
    const dotted = collate(await download(suite.agent.client, join(root, "inner", "..")));
    expect(dotted.entries.map((entry) => entry.header.path).sort()).toEqual(["named", "named/inner"]);
    const slashed = collate(await download(suite.agent.client, `${root}//`));
    expect(slashed.entries[0]?.header.path).toBe("named");
  });

  it("starts sending before it has walked the tree (20,000 files)", async () => {
    const root = join(suite.dir, "big-tree");
    for (let d = 0; d < 200; d++) {
      const dir = join(root, `d${d}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 100; f++) writeFileSync(join(dir, `f${f}`), "x");
    }
    // Once the first header is here, the rest of the tree is removed. A lazy walk never
    // sees what was not yet walked; a walk done up front would still send (or report as
    // vanished) all 20,000 files.
    const messages = await downloadWithPause(
      suite.agent,
      root,
      (message) => message.response.case === "header",
      () => {
        for (let d = 0; d < 200; d++) rmSync(join(root, `d${d}`), { recursive: true, force: true });
      },
    );
    const transfer = collate(messages);
    expect(transfer.entries[0]?.header.path).toBe("big-tree");
    const seen = transfer.entries.length + transfer.skipped.length;
    console.info(`entries seen after removing the tree under the first header: ${seen} of 20,201`);
    expect(seen).toBeLessThan(20_000 / 4);
    expect(transfer.final?.final).toBe(true);
  });

  it("packs whole entries into batches when asked, and larger files in the original framing", async () => {
    const root = join(suite.dir, "root");
    mkdirSync(join(root, "sub"), { recursive: true });
    for (let i = 0; i < 2500; i++) writeFileSync(join(root, i % 2 ? "sub" : "", `f${i}`), `file ${i}`);
    writeFileSync(join(root, "large"), randomBytes(SMALL_FILE_BYTES + 1));
    writeFileSync(join(root, "full"), randomBytes(SMALL_FILE_BYTES));
    symlinkSync("sub", join(root, "link"));

    const batched = collate(await download(suite.agent.client, root, false, true));
    const classic = collate(await download(suite.agent.client, root));
    // Exactly the same entries, with the same headers and data, either way.
    expect(batched.entries).toHaveLength(2505);
    const classicByPath = byPath(classic);
    for (const entry of batched.entries) {
      const twin = classicByPath.get(entry.header.path);
      expect(entry.header, entry.header.path).toEqual(twin?.header);
      expect(entry.data.equals(twin?.data ?? Buffer.alloc(0)), entry.header.path).toBe(true);
    }
    expect(classic.batchSizes).toEqual([]);
    expect(Math.max(...batched.batchSizes)).toBeLessThanOrEqual(MAX_BATCH_ENTRIES);
    expect(batched.batchSizes.length).toBeGreaterThanOrEqual(3);
    const kinds = byPath(batched);
    expect(kinds.get("root")?.batched).toBe(true);
    expect(kinds.get("root/link")?.batched).toBe(true);
    expect(kinds.get("root/full")?.batched).toBe(true);
    expect(kinds.get("root/large")?.batched).toBe(false);
    expect(batched.final).toMatchObject({ final: true, partial: false });
  });

  it("closes every file and directory when the client cancels mid-transfer", async () => {
    const root = join(suite.dir, "root");
    for (let d = 0; d < 20; d++) {
      mkdirSync(join(root, `d${d}`, "deeper"), { recursive: true });
      for (let f = 0; f < 50; f++) writeFileSync(join(root, `d${d}`, "deeper", `f${f}`), Buffer.alloc(8192, f));
    }
    // A first call opens the connection, which stays.
    await download(suite.agent.client, join(root, "d0", "deeper", "f0"));
    const before = openDescriptorCount(suite.agent.agent.pid);
    const call = suite.agent.client.copyFromGuest(
      create(CopyFromGuestRequestSchema, { path: root }),
      new grpc.Metadata(),
    );
    const cancelled = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    let received = 0;
    call.on("data", (message: CopyFromGuestResponse) => {
      // Deep inside the tree, with a file open: stop listening and cancel.
      if (message.response.case === "data" && ++received === 20) {
        call.pause();
        call.cancel();
      }
    });
    expect((await cancelled).code).toBe(grpc.status.CANCELLED);
    expect(await eventually(() => openDescriptorCount(suite.agent.agent.pid) <= before)).toBe(true);
    // The agent still serves.
    expect(collate(await download(suite.agent.client, join(root, "d0", "deeper", "f1"))).entries).toHaveLength(1);
  });

  it("sends exactly the declared size when a file grows during the copy", async () => {
    const file = join(suite.dir, "growing");
    const size = 64 * 1024 * 1024;
    writeFileSync(file, Buffer.alloc(size, 1));
    const messages = await downloadWithPause(
      suite.agent,
      file,
      (message) => message.response.case === "data",
      () => appendFileSync(file, Buffer.alloc(1024 * 1024, 2)),
    );
    const transfer = collate(messages);
    expect(transfer.entries[0]?.header.size).toBe(BigInt(size));
    expect(transfer.entries[0]?.data.length).toBe(size);
    expect(transfer.entries[0]?.data.includes(2)).toBe(false);
    // What was sent is a prefix of the file, but the file it came from changed: the host decides.
    expect(transfer.final).toMatchObject({ final: true, partial: false, changed: true });
  });

  it("marks a file written in place during the copy as changed, and sends what it read", async () => {
    const file = join(suite.dir, "rewritten");
    const size = 64 * 1024 * 1024;
    writeFileSync(file, Buffer.alloc(size, 1));
    const tail = 1024 * 1024;
    const messages = await downloadWithPause(
      suite.agent,
      file,
      (message) => message.response.case === "data",
      () => {
        // Same size, new last MiB: the agent is held back at most a few MiB into the file.
        const fd = openSync(file, "r+");
        writeSync(fd, Buffer.alloc(tail, 2), 0, tail, size - tail);
        closeSync(fd);
      },
    );
    const transfer = collate(messages);
    const [entry] = transfer.entries as [ReceivedEntry];
    expect(entry.data.length).toBe(size);
    // Old head, new tail: a file that never existed, which is why the end says so.
    expect(entry.data[0]).toBe(1);
    expect(entry.data[size - 1]).toBe(2);
    expect(transfer.skipped).toEqual([]);
    expect(transfer.final).toMatchObject({ final: true, partial: false, changed: true });

    // Left alone, the same file is not marked.
    const again = collate(await download(suite.agent.client, file));
    expect(again.final).toMatchObject({ final: true, changed: false });
  });

  it("marks the changed file of a tree on its own end, and only that one", async () => {
    const root = join(suite.dir, "root");
    mkdirSync(root);
    const size = 64 * 1024 * 1024;
    writeFileSync(join(root, "a-big"), Buffer.alloc(size, 1));
    const messages = await downloadWithPause(
      suite.agent,
      root,
      (message) => message.response.case === "data",
      () => {
        appendFileSync(join(root, "a-big"), "more");
        // Created after the walk began: it may or may not be listed, but it never changes.
        writeFileSync(join(root, "z-small"), "z");
      },
    );
    const entries = byPath(collate(messages));
    expect(entries.get("root/a-big")?.end.changed).toBe(true);
    expect(entries.get("root")?.end.changed).toBe(false);
    for (const [path, entry] of entries) if (path !== "root/a-big") expect(entry.end.changed, path).toBe(false);
  });

  it("reports a file that shrank during the copy as skipped, with the bytes that were there", async () => {
    const file = join(suite.dir, "shrinking");
    const size = 64 * 1024 * 1024;
    writeFileSync(file, Buffer.alloc(size, 1));
    const messages = await downloadWithPause(
      suite.agent,
      file,
      (message) => message.response.case === "data",
      () => truncateSync(file, 0),
    );
    const transfer = collate(messages);
    const [entry] = transfer.entries as [ReceivedEntry];
    expect(entry.header.size).toBe(BigInt(size));
    expect(entry.data.length).toBeLessThan(size);
    expect(transfer.skipped).toEqual([
      expect.objectContaining({ path: "shrinking", code: "SIZE_MISMATCH", reason: expect.stringMatching(/shrank/) }),
    ]);
    expect(transfer.final).toMatchObject({ final: true, partial: true });
  });

  it("sends /proc and /sys files whole, with the size of what they hold, as a root and in a tree", async () => {
    // procfs says 0 bytes, sysfs 4096 for every attribute; neither is what reading gives.
    for (const path of ["/proc/cpuinfo", "/proc/self/status", "/sys/devices/system/cpu/online"]) {
      for (const batch of [false, true]) {
        const transfer = collate(await download(suite.agent.client, path, false, batch));
        expect(transfer.errors, path).toEqual([]);
        expect(transfer.skipped, path).toEqual([]);
        const [entry] = transfer.entries as [ReceivedEntry];
        if (path !== "/proc/self/status") expect(entry.data.toString(), path).toBe(readFileSync(path, "utf8"));
        // The agent's own status, which cannot be compared with a read from here.
        else expect(entry.data.toString()).toMatch(new RegExp(`\nPid:\t${suite.agent.agent.pid}\n[^]*\nVmRSS:`));
        expect(entry.header.size, path).toBe(BigInt(entry.data.length));
        expect(entry.data.length, path).toBeGreaterThan(0);
        expect(transfer.final).toMatchObject({ final: true, partial: false, changed: false });
      }
    }
    const topology = "/sys/devices/system/cpu/cpu0/topology";
    const tree = byPath(collate(await download(suite.agent.client, topology, false, true)));
    const files = [...tree.values()].filter((entry) => !entry.header.isDir);
    expect(files.length).toBeGreaterThan(3);
    for (const entry of files) {
      const direct = readFileSync(join(topology, entry.header.path.slice("topology/".length)));
      expect(entry.data.equals(direct), entry.header.path).toBe(true);
      expect(entry.header.size).toBe(BigInt(direct.length));
    }
  });

  it("refuses a synthetic file that holds more than MAX_SYNTHETIC_FILE_BYTES, with EFBIG", async () => {
    // The agent's own page map: 8 bytes per page of its address space, far past 64 MiB.
    const transfer = collate(await download(suite.agent.client, "/proc/self/pagemap"));
    expect(transfer.entries).toEqual([]);
    expect(transfer.errors).toEqual([
      expect.objectContaining({
        path: "/proc/self/pagemap",
        code: "EFBIG",
        message: expect.stringMatching(/67108864/),
      }),
    ]);
  });

  it("does not read through a directory swapped for a symlink during the walk", async () => {
    const root = join(suite.dir, "root");
    const decoy = join(suite.dir, "decoy");
    mkdirSync(join(root, "a"), { recursive: true });
    mkdirSync(decoy);
    const content = Buffer.alloc(4096, "p");
    for (let f = 0; f < 3000; f++) {
      writeFileSync(join(root, "a", `f${f}`), content);
      writeFileSync(join(decoy, `f${f}`), "SECRET");
    }
    const messages = await downloadWithPause(
      suite.agent,
      root,
      (message) => message.response.case === "header" && message.response.value.path === "root/a",
      () => {
        renameSync(join(root, "a"), join(root, "a-moved"));
        symlinkSync(decoy, join(root, "a"));
      },
    );
    const transfer = collate(messages);
    for (const entry of transfer.entries) {
      expect(entry.data.includes("SECRET"), entry.header.path).toBe(false);
    }
    const changed = transfer.skipped.filter((skip) => skip.code === "CHANGED");
    console.info(`files refused after the swap: ${changed.length}`);
    expect(changed.length).toBeGreaterThan(0);
    expect(transfer.final).toMatchObject({ final: true, partial: true });
  });
});

describe("CopyFromGuest as an unprivileged agent", () => {
  const suite = useTestAgent({ asNobody: true });

  it("skips what it cannot read, reports it by path, and sends the rest", async () => {
    const root = join(suite.dir, "root");
    mkdirSync(join(root, "closed"), { recursive: true });
    writeFileSync(join(root, "ok.txt"), "readable", { mode: 0o644 });
    writeFileSync(join(root, "secret"), "unreadable", { mode: 0o600 });
    writeFileSync(join(root, "closed", "inside"), "hidden", { mode: 0o644 });
    chmodSync(root, 0o755);
    chmodSync(join(root, "closed"), 0o700);

    const transfer = collate(await download(suite.agent.client, root));
    const skipped = new Map(transfer.skipped.map((skip) => [skip.path, skip]));
    expect(skipped.get("root/secret")).toMatchObject({ code: "EACCES" });
    expect(skipped.get("root/closed")).toMatchObject({ code: "EACCES" });
    const entries = byPath(transfer);
    expect(entries.get("root/ok.txt")?.data.toString()).toBe("readable");
    expect(entries.has("root/secret")).toBe(false);
    expect(entries.has("root/closed")).toBe(false);
    expect(transfer.final).toMatchObject({ final: true, partial: true });
  });

  it("reports an unreadable root as an error message", async () => {
    const closed = join(suite.dir, "closed");
    mkdirSync(closed, { mode: 0o700 });
    const secret = join(suite.dir, "secret");
    writeFileSync(secret, "x", { mode: 0o600 });
    const directory = collate(await download(suite.agent.client, closed));
    expect(directory.errors).toEqual([expect.objectContaining({ path: closed, code: "EACCES" })]);
    const file = collate(await download(suite.agent.client, secret));
    expect(file.errors).toEqual([expect.objectContaining({ path: secret, code: "EACCES" })]);
  });
});
