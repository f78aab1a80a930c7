// The one tree walker, on temp directories: order, links, special files, loops, and
// that it releases every directory however the walk ends.
import { execFileSync } from "node:child_process";
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { walkTree } from "../src/tree-walk.js";
import { byPath, collect, openDescriptors, tempDir } from "./send-support.js";

function sampleTree(): string {
  const root = join(tempDir(), "root");
  mkdirSync(join(root, "sub/deeper"), { recursive: true });
  writeFileSync(join(root, "a.txt"), "a");
  writeFileSync(join(root, "sub/b.txt"), "bb");
  writeFileSync(join(root, "sub/deeper/c.txt"), "ccc");
  symlinkSync("a.txt", join(root, "link-to-a"));
  symlinkSync("sub", join(root, "link-to-sub"));
  symlinkSync("/nowhere/at/all", join(root, "dangling"));
  return root;
}

describe("walkTree", () => {
  it("yields the root first, then each directory before its contents, links as links", async () => {
    const root = sampleTree();
    const items = await collect(walkTree(root, { followLinks: false, checkLocation: true }));
    const paths = items.map((item) => item.relativePath);
    expect(paths[0]).toBe("");
    expect(paths.indexOf("sub")).toBeLessThan(paths.indexOf("sub/b.txt"));
    expect(paths.indexOf("sub/deeper")).toBeLessThan(paths.indexOf("sub/deeper/c.txt"));
    expect(new Set(paths)).toEqual(
      new Set([
        "",
        "a.txt",
        "sub",
        "sub/b.txt",
        "sub/deeper",
        "sub/deeper/c.txt",
        "link-to-a",
        "link-to-sub",
        "dangling",
      ]),
    );
    const found = byPath(items);
    expect(found.get("link-to-a")).toMatchObject({ kind: "entry", linkTarget: "a.txt", followed: false });
    expect(found.get("dangling")).toMatchObject({ kind: "entry", linkTarget: "/nowhere/at/all" });
    expect(found.get("sub/b.txt")).toMatchObject({ kind: "entry", path: join(root, "sub/b.txt"), linkTarget: "" });
    // Files carry where they must really be, for the open's check, when the policy asks.
    expect(found.get("sub/b.txt")).toMatchObject({ realPath: join(root, "sub/b.txt") });
    const unchecked = byPath(await collect(walkTree(root, { followLinks: false })));
    expect(unchecked.get("sub/b.txt")).toMatchObject({ realPath: undefined });
  });

  it("follows links when asked, skipping dangling ones and directories that contain themselves", async () => {
    const root = sampleTree();
    symlinkSync("..", join(root, "sub/up"));
    const found = byPath(await collect(walkTree(root, { followLinks: true })));
    expect(found.get("link-to-a")).toMatchObject({
      kind: "entry",
      linkTarget: "",
      followed: true,
      realPath: undefined,
    });
    expect(found.get("link-to-sub/deeper/c.txt")).toMatchObject({ kind: "entry" });
    expect(found.get("dangling")).toMatchObject({ kind: "skipped", code: "ENOENT" });
    expect(found.get("sub/up")).toMatchObject({ kind: "skipped", code: "ELOOP" });
    expect(found.get("link-to-sub/up")).toMatchObject({ kind: "skipped", code: "ELOOP" });
  });

  it("skips FIFOs, sockets and devices without opening them", async () => {
    const root = join(tempDir(), "root");
    mkdirSync(root);
    execFileSync("mkfifo", [join(root, "fifo")]);
    symlinkSync("/dev/null", join(root, "null-device"));
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(root, "socket"), resolve));
    try {
      const found = byPath(await collect(walkTree(root, { followLinks: true })));
      expect(found.get("fifo")).toMatchObject({
        kind: "skipped",
        code: "SPECIAL_FILE",
        reason: "a FIFO is never opened",
      });
      expect(found.get("socket")).toMatchObject({ kind: "skipped", code: "SPECIAL_FILE" });
      expect(found.get("null-device")).toMatchObject({ kind: "skipped", code: "SPECIAL_FILE" });
    } finally {
      server.close();
    }
  });

  it("throws for a root that is not there, and follows a linked root only when told", async () => {
    const dir = tempDir();
    await expect(collect(walkTree(join(dir, "missing"), { followLinks: false }))).rejects.toMatchObject({
      code: "ENOENT",
    });
    mkdirSync(join(dir, "real"));
    writeFileSync(join(dir, "real/x"), "x");
    symlinkSync("real", join(dir, "link"));
    const asLink = await collect(walkTree(join(dir, "link"), { followLinks: false }));
    expect(asLink).toEqual([expect.objectContaining({ relativePath: "", linkTarget: "real" })]);
    const followed = await collect(walkTree(join(dir, "link"), { followLinks: false, followRoot: true }));
    expect(followed.map((item) => item.relativePath)).toEqual(["", "x"]);
    expect(followed[0]).toMatchObject({ followed: true });
  });

  it("closes its directories when the consumer stops early, and when it finishes", async () => {
    const root = join(tempDir(), "root");
    mkdirSync(join(root, "a/b/c/d"), { recursive: true });
    writeFileSync(join(root, "a/b/c/d/file"), "x");
    const before = openDescriptors();
    const walk = walkTree(root, { followLinks: false });
    for await (const item of walk) {
      if (item.relativePath === "a/b/c/d") break;
    }
    expect(openDescriptors()).toBe(before);
    await collect(walkTree(root, { followLinks: false }));
    expect(openDescriptors()).toBe(before);
  });

  it("is lazy: a directory is read only when the walk reaches it", async () => {
    const root = join(tempDir(), "root");
    mkdirSync(join(root, "later"), { recursive: true });
    const walk = walkTree(root, { followLinks: false });
    expect((await walk.next()).value).toMatchObject({ relativePath: "" });
    expect((await walk.next()).value).toMatchObject({ relativePath: "later" });
    // Written after the walk opened `later` but before it read it.
    writeFileSync(join(root, "later/new"), "n");
    expect((await walk.next()).value).toMatchObject({ relativePath: "later/new" });
    expect((await walk.next()).done).toBe(true);
  });

  it("reports an entry that vanished between the listing and its lstat", async () => {
    const root = join(tempDir(), "root");
    mkdirSync(root);
    for (let index = 0; index < 3; index += 1) writeFileSync(join(root, `f${index}`), "x");
    const walk = walkTree(root, { followLinks: false });
    await walk.next();
    const first = (await walk.next()).value;
    // The directory was listed into the walk's buffer already; move the rest away.
    const rest = ["f0", "f1", "f2"].filter((name) => name !== first?.relativePath);
    for (const name of rest) renameSync(join(root, name), join(root, "..", name));
    const later = await collect(walk);
    expect(later).toEqual(rest.map(() => expect.objectContaining({ kind: "skipped", code: "ENOENT" })));
  });
});
