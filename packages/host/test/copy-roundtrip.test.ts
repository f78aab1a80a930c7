// copyTo and copyFrom against the real agent (its binary, on a temp Unix socket): trees
// with nested directories, symlinks, modes, sub-second times and ownership, both ways.
// The agent runs on this machine, so "guest" paths are paths in a temp dir here.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import {
  chmod,
  chown,
  lchown,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readFile,
  readlink,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CopyError } from "../src/copy/copy-error.js";
import { copyFrom } from "../src/copy/copy-from.js";
import { copyTo } from "../src/copy/copy-to.js";
import { useCopyAgent } from "./copy-fixture.js";

const suite = useCopyAgent("guestkit-copy-test-");

/** Sub-second times, distinct per entry, that a double represents to well under a microsecond. */
const BASE_TIME = 1_600_000_000;
const timeOf = (index: number) => BASE_TIME + index * 1000 + 0.123456 + index / 1000;

/**
 * Builds the test tree: nested directories (one empty), files with modes 0755, 0600,
 * 04755, relative symlinks, owners 1000:1000 and 0:0, sub-second mtimes everywhere
 * (directories set last, deepest first, so creating their contents does not disturb them).
 */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, "bin"), { recursive: true });
  await mkdir(join(root, "nested", "deep"), { recursive: true });
  await mkdir(join(root, "empty"));
  await writeFile(join(root, "bin", "tool"), "#!/bin/sh\necho tool\n");
  await writeFile(join(root, "secret"), "s3cr3t\n");
  await writeFile(join(root, "suid"), "setuid\n");
  await writeFile(
    join(root, "nested", "deep", "data.bin"),
    createHash("sha512").update("x").digest().toString("hex").repeat(3000),
  );
  await writeFile(join(root, "nested", "empty-file"), "");
  await symlink("bin/tool", join(root, "tool-link"));
  await symlink("../secret", join(root, "nested", "up-link"));
  await symlink("missing-target", join(root, "dangling"));
  await chmod(join(root, "bin", "tool"), 0o755);
  await chmod(join(root, "secret"), 0o600);
  await chmod(join(root, "empty"), 0o700);
  await chown(join(root, "bin", "tool"), 1000, 1000);
  await chown(join(root, "nested"), 1000, 1000);
  await lchown(join(root, "tool-link"), 1000, 1000);
  await chown(join(root, "secret"), 0, 0);
  // After chown, which clears setuid.
  await chmod(join(root, "suid"), 0o4755);
  const files = ["bin/tool", "secret", "suid", "nested/deep/data.bin", "nested/empty-file"];
  const links = ["tool-link", "nested/up-link", "dangling"];
  const dirs = ["nested/deep", "bin", "nested", "empty", ""];
  let index = 0;
  for (const path of files) await utimes(join(root, path), timeOf(index), timeOf(index++));
  for (const path of links) await lutimes(join(root, path), timeOf(index), timeOf(index++));
  for (const path of dirs) await utimes(join(root, path), timeOf(index), timeOf(index++));
}

interface EntryInfo {
  type: "file" | "dir" | "symlink" | "other";
  mode: number;
  size: number;
  content?: string;
  target?: string;
  mtimeNs: bigint;
  uid: number;
  gid: number;
}

/** Everything about a tree that a copy should carry, by relative path ("" is the root). */
async function snapshot(root: string): Promise<Map<string, EntryInfo>> {
  const result = new Map<string, EntryInfo>();
  const paths = ["", ...(await readdir(root, { recursive: true })).map(String)];
  for (const path of paths.sort()) {
    const full = join(root, path);
    const stats = await lstat(full, { bigint: true });
    const type = stats.isFile() ? "file" : stats.isDirectory() ? "dir" : stats.isSymbolicLink() ? "symlink" : "other";
    result.set(path, {
      type,
      mode: Number(stats.mode) & 0o7777,
      size: type === "file" ? Number(stats.size) : 0,
      ...(type === "file"
        ? {
            content: createHash("sha256")
              .update(await readFile(full))
              .digest("hex"),
          }
        : {}),
      ...(type === "symlink" ? { target: await readlink(full) } : {}),
      mtimeNs: stats.mtimeNs,
      uid: Number(stats.uid),
      gid: Number(stats.gid),
    });
  }
  return result;
}

interface CompareOptions {
  ownership: boolean;
  /** Entries whose setuid/setgid bits are expected dropped. */
  setuidDropped: boolean;
}

/** Asserts that `copy` carries `original`: same entries, types, contents, links, modes, times (to 1 µs), owners. */
function expectSameTree(copy: Map<string, EntryInfo>, original: Map<string, EntryInfo>, options: CompareOptions) {
  expect([...copy.keys()]).toEqual([...original.keys()]);
  for (const [path, want] of original) {
    const got = copy.get(path) as EntryInfo;
    const where = `entry "${path}"`;
    expect(got.type, where).toBe(want.type);
    expect(got.content, where).toBe(want.content);
    expect(got.target, where).toBe(want.target);
    if (want.type !== "symlink") {
      expect(got.mode, where).toBe(options.setuidDropped ? want.mode & ~0o6000 : want.mode);
    }
    // Node sets times through a double of seconds: a microsecond is the precision it offers.
    expect(Math.abs(Number(got.mtimeNs - want.mtimeNs)), `${where} mtime`).toBeLessThanOrEqual(1000);
    if (options.ownership) expect([got.uid, got.gid], `${where} owner`).toEqual([want.uid, want.gid]);
    else expect([got.uid, got.gid], `${where} owner`).toEqual([process.getuid?.(), process.getgid?.()]);
  }
}

describe("round trips through the real agent", () => {
  it("a tree goes in and comes back with modes, sub-second times, links and owners (-a, keepSetuid)", async () => {
    const source = join(suite.work, "src", "tree");
    await makeTree(source);
    const original = await snapshot(source);
    const guestCopy = join(suite.work, "guest", "tree");
    await mkdir(join(suite.work, "guest"));

    const up = await copyTo(suite.client, source, guestCopy, { preserveOwnership: true, keepSetuid: true });
    expect(up).toMatchObject({ entries: original.size, partial: false, skippedCount: 0 });
    expect(up.bytes).toBe([...original.values()].reduce((sum, entry) => sum + entry.size, 0));
    expectSameTree(await snapshot(guestCopy), original, { ownership: true, setuidDropped: false });

    const back = join(suite.work, "back");
    const down = await copyFrom(suite.client, guestCopy, back, { preserveOwnership: true, keepSetuid: true });
    expect(down).toMatchObject({ entries: original.size, bytes: up.bytes, partial: false });
    expectSameTree(await snapshot(back), original, { ownership: true, setuidDropped: false });
  });

  it("by default setuid/setgid are dropped and the receiver owns what it writes, both ways", async () => {
    const source = join(suite.work, "src", "tree");
    await makeTree(source);
    const original = await snapshot(source);
    await mkdir(join(suite.work, "guest"));
    const guestCopy = join(suite.work, "guest", "tree");
    await copyTo(suite.client, source, guestCopy);
    // The agent runs as this test's user (root): it owns everything it wrote.
    expectSameTree(await snapshot(guestCopy), original, { ownership: false, setuidDropped: true });

    const back = join(suite.work, "back");
    const keptCopy = join(suite.work, "guest", "kept");
    await copyTo(suite.client, source, keptCopy, { preserveOwnership: true, keepSetuid: true });
    await copyFrom(suite.client, keptCopy, back);
    expectSameTree(await snapshot(back), original, { ownership: false, setuidDropped: true });
  });

  it("preserveOwnership applies 0:0 exactly, over an existing directory owned by 1000:1000", async () => {
    const source = join(suite.work, "src");
    await mkdir(join(source, "owned"), { recursive: true });
    await chown(join(source, "owned"), 0, 0);
    const guestDir = join(suite.work, "guest", "owned");
    await mkdir(guestDir, { recursive: true });
    await chown(guestDir, 1000, 1000);
    await copyTo(suite.client, join(source, "owned"), join(suite.work, "guest"), { preserveOwnership: true });
    expect((await lstat(guestDir)).uid).toBe(0);

    const local = join(suite.work, "local", "owned");
    await mkdir(local, { recursive: true });
    await chown(local, 1000, 1000);
    await copyFrom(suite.client, guestDir, join(suite.work, "local"), { preserveOwnership: true });
    expect([(await lstat(local)).uid, (await lstat(local)).gid]).toEqual([0, 0]);
  });

  it("followLinks copies what links point to, both ways", async () => {
    const source = join(suite.work, "src");
    await mkdir(join(source, "dir"), { recursive: true });
    await writeFile(join(source, "target.txt"), "pointed at\n");
    await symlink("../target.txt", join(source, "dir", "link"));
    await mkdir(join(suite.work, "guest"));
    await copyTo(suite.client, join(source, "dir"), join(suite.work, "guest", "dir"), { followLinks: true });
    expect((await lstat(join(suite.work, "guest", "dir", "link"))).isFile()).toBe(true);
    expect(await readFile(join(suite.work, "guest", "dir", "link"), "utf8")).toBe("pointed at\n");

    await symlink("../../src/target.txt", join(suite.work, "guest", "dir", "link2"));
    await copyFrom(suite.client, join(suite.work, "guest", "dir"), join(suite.work, "back"), { followLinks: true });
    expect((await lstat(join(suite.work, "back", "link2"))).isFile()).toBe(true);
    expect(await readFile(join(suite.work, "back", "link2"), "utf8")).toBe("pointed at\n");
  });

  it("a single symlink travels as a link", async () => {
    await symlink("sibling", join(suite.work, "link"));
    await mkdir(join(suite.work, "guest"));
    await copyTo(suite.client, join(suite.work, "link"), join(suite.work, "guest", "link"));
    expect(await readlink(join(suite.work, "guest", "link"))).toBe("sibling");
    await mkdir(join(suite.work, "back"));
    await copyFrom(suite.client, join(suite.work, "guest", "link"), join(suite.work, "back"));
    expect(await readlink(join(suite.work, "back", "link"))).toBe("sibling");
  });

  it("FIFOs are skipped and reported, and the rest is copied, both ways", async () => {
    const source = join(suite.work, "src");
    await mkdir(source);
    await writeFile(join(source, "regular"), "ok");
    execFileSync("mkfifo", [join(source, "pipe")]);
    await mkdir(join(suite.work, "guest"));
    const up = await copyTo(suite.client, source, join(suite.work, "guest", "src"));
    expect(up).toMatchObject({ partial: true, skippedCount: 1, skipped: [{ path: "src/pipe", code: "SPECIAL_FILE" }] });
    expect((await readdir(join(suite.work, "guest", "src"))).sort()).toEqual(["regular"]);

    const down = await copyFrom(suite.client, source, join(suite.work, "back"));
    expect(down).toMatchObject({
      partial: true,
      skippedCount: 1,
      skipped: [{ path: "src/pipe", code: "SPECIAL_FILE" }],
    });
    expect((await readdir(join(suite.work, "back"))).sort()).toEqual(["regular"]);
  });

  it("copyFrom refuses a real guest tree holding an absolute symlink", async () => {
    const guestTree = join(suite.work, "guest", "tree");
    await mkdir(guestTree, { recursive: true });
    await writeFile(join(guestTree, "a"), "a");
    await symlink("/etc/passwd", join(guestTree, "passwd"));
    const error = await copyFrom(suite.client, guestTree, join(suite.work, "back")).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(CopyError);
    expect((error as CopyError).reason).toBe("unsafe-entry");
    expect((error as CopyError).message).toMatch(/refused entry "tree\/passwd": absolute symlink target/);
    const left = await readdir(join(suite.work, "back"));
    expect(left.filter((name) => name.includes(".guestkit-"))).toEqual([]);
    expect(left).not.toContain("passwd");
  });

  it("a missing source is a clear SOURCE error, either way", async () => {
    const down = await copyFrom(suite.client, join(suite.work, "nope"), join(suite.work, "back")).catch(
      (reason: unknown) => reason,
    );
    expect(down).toBeInstanceOf(CopyError);
    expect((down as CopyError).reason).toBe("source");
    expect((down as CopyError).message).toMatch(/^no such file or directory: guest:\/.*nope/);
    const up = await copyTo(suite.client, join(suite.work, "nope"), join(suite.work, "guest")).catch(
      (reason: unknown) => reason,
    );
    expect(up).toBeInstanceOf(CopyError);
    expect((up as CopyError).reason).toBe("source");
    expect((up as CopyError).message).toMatch(/^cannot read .*nope: no such file or directory$/);
  });
});

describe("against guestkit's agent, the capabilities it announced are used", () => {
  it("a tree travels in ONE CopyToGuest stream, small entries in batches, and the answer counts them all", async () => {
    const source = join(suite.work, "tree");
    mkdirSync(join(source, "sub"), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(source, "sub", `f${i}`), `${i}\n`);
    const sent: string[] = [];
    let streams = 0;
    const guest = suite.client.guest;
    // The same connection, with its CopyToGuest calls watched, and in-band (where the
    // messages can be watched; data-connection.test.ts covers the other way).
    const watched = Object.create(suite.client) as typeof suite.client;
    Object.defineProperty(watched, "has", {
      value: (name: string) => name !== "data-connection" && suite.client.has(name as never),
    });
    Object.defineProperty(watched, "guest", {
      value: new Proxy(guest, {
        get(target, name, receiver) {
          if (name !== "copyToGuest") return Reflect.get(target, name, receiver);
          return (...args: Parameters<typeof guest.copyToGuest>) => {
            streams += 1;
            const stream = guest.copyToGuest(...args);
            const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
            stream.write = ((message: { request: { case?: string } }, ...rest: unknown[]) => {
              sent.push(message.request.case ?? "");
              return write(message, ...rest);
            }) as typeof stream.write;
            return stream;
          };
        },
      }),
    });
    const result = await copyTo(watched, source, join(suite.work, "guest"));
    expect(result).toMatchObject({ entries: 52, partial: false });
    expect(streams).toBe(1);
    expect(sent).toContain("batch");
    expect(sent).not.toContain("start");
    expect(readFileSync(join(suite.work, "guest", "sub", "f49"), "utf8")).toBe("49\n");
  });
});
