// The guest image builder's parts, on small real inputs in temp dirs: the cpio writer
// (read back by GNU cpio), the LZ4 decoder, the kernel module order, and the
// node_modules layout. The whole builder runs for real in guest-e2e.test.ts.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeCpio } from "../../scripts/guest-image/cpio.ts";
import { ImageTree } from "../../scripts/guest-image/image-tree.ts";
import { moduleLoadOrder } from "../../scripts/guest-image/kernel.ts";
import { decompressLz4Legacy } from "../../scripts/guest-image/lz4-legacy.ts";
import { addPackageTree } from "../../scripts/guest-image/node-packages.ts";

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "guestkit-image-"));
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

function write(path: string, content: string | Buffer, mode = 0o644): string {
  const full = join(dir, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, content, { mode });
  return full;
}

describe("writeCpio", () => {
  function sampleTree(): ImageTree {
    const tree = new ImageTree();
    tree.file("usr/bin/tool", write("src/tool", "#!/bin/sh\necho hi\n", 0o755), 0o755);
    tree.data("etc/motd", "hello\n");
    tree.symlink("bin/sh", "/bin/busybox");
    tree.dir("tmp", 0o1777);
    tree.chardev("dev/console", 0o600, 5, 1);
    return tree;
  }

  it("writes a newc archive GNU cpio reads back, parents first, with modes and links", () => {
    const archive = join(dir, "out.cpio");
    writeCpio(archive, sampleTree().entries(), 1_700_000_000);
    const listing = execFileSync("cpio", ["-t", "-v", "--quiet", "-F", archive], { encoding: "utf8" })
      .trim()
      .split("\n")
      // "crw------- 1 root root 5, 1 Nov 14 2023 dev/console": mode, then the name after the date.
      .map((line) => `${line.split(" ")[0]} ${/ [A-Z][a-z]{2} +\d+ +(?:\d{4}|\d\d:\d\d) (.*)$/.exec(line)?.[1]}`);
    expect(listing).toEqual([
      "drwxr-xr-x bin",
      "lrwxrwxrwx bin/sh -> /bin/busybox",
      "drwxr-xr-x dev",
      "crw------- dev/console",
      "drwxr-xr-x etc",
      "-rw-r--r-- etc/motd",
      "drwxrwxrwt tmp",
      "drwxr-xr-x usr",
      "drwxr-xr-x usr/bin",
      "-rwxr-xr-x usr/bin/tool",
    ]);
    const extracted = join(dir, "x");
    mkdirSync(extracted);
    execFileSync(
      "cpio",
      ["-i", "-d", "--quiet", "--no-absolute-filenames", "-F", archive, "usr/bin/tool", "etc/motd"],
      {
        cwd: extracted,
      },
    );
    expect(readFileSync(join(extracted, "usr/bin/tool"), "utf8")).toBe("#!/bin/sh\necho hi\n");
    expect(readFileSync(join(extracted, "etc/motd"), "utf8")).toBe("hello\n");
  });

  it("is reproducible: the same tree gives the same bytes", () => {
    writeCpio(join(dir, "a.cpio"), sampleTree().entries(), 0);
    writeCpio(join(dir, "b.cpio"), sampleTree().entries(), 0);
    expect(readFileSync(join(dir, "a.cpio")).equals(readFileSync(join(dir, "b.cpio")))).toBe(true);
  });

  it("refuses a path added twice and a path that escapes the root", () => {
    const tree = new ImageTree();
    tree.data("etc/a", "1");
    expect(() => tree.data("/etc/a", "2")).toThrow("image tree: etc/a added twice");
    expect(() => tree.data("../outside", "x")).toThrow("path escapes the root");
  });
});

describe("decompressLz4Legacy", () => {
  // Hand-made block: 3 literals "abc", then a match 3 back of 9 bytes (overlapping,
  // so it repeats "abc"), then the last literals "xyz".
  const block = Buffer.concat([
    Buffer.from([0x35]),
    Buffer.from("abc"),
    Buffer.from([3, 0]),
    Buffer.from([0x30]),
    Buffer.from("xyz"),
  ]);
  const frame = (...blocks: Buffer[]) =>
    Buffer.concat([
      Buffer.from([0x02, 0x21, 0x4c, 0x18]),
      ...blocks.flatMap((b) => [Buffer.from(Uint32Array.of(b.length).buffer), b]),
    ]);

  it("decodes literals and overlapping matches, across blocks", () => {
    expect(decompressLz4Legacy(frame(block), 15).toString()).toBe("abcabcabcabcxyz");
    expect(decompressLz4Legacy(frame(block, block), 30).toString()).toBe("abcabcabcabcxyz".repeat(2));
  });

  it("rejects what is not a well-formed frame", () => {
    expect(() => decompressLz4Legacy(Buffer.from("not lz4 at all"), 10)).toThrow("not an LZ4 legacy frame");
    expect(() => decompressLz4Legacy(frame(block), 20)).toThrow("LZ4: decoded 15 bytes, expected 20");
    const badOffset = Buffer.concat([Buffer.from([0x05]), Buffer.from([9, 0]), Buffer.from([0x10, 0x61])]);
    expect(() => decompressLz4Legacy(frame(badOffset), 10)).toThrow("LZ4: bad match");
  });
});

describe("moduleLoadOrder", () => {
  function module(path: string, depends: string): void {
    write(
      `modules/kernel/${path}`,
      Buffer.concat([Buffer.from("\x7fELF junk\0"), Buffer.from(`depends=${depends}\0name=x\0`)]),
    );
  }

  it("puts dependencies first, each once, and leaves out built-in modules", () => {
    module("net/vsock.ko", "");
    module("net/vmw_vsock_virtio_transport_common.ko", "vsock");
    module("net/vsock_loopback.ko", "vmw_vsock_virtio_transport_common,vsock");
    module("virtio/virtio-ring.ko", "");
    module("net/vmw_vsock_virtio_transport.ko", "vmw_vsock_virtio_transport_common,virtio,virtio_ring,vsock");
    write("modules/modules.builtin", "kernel/drivers/virtio/virtio.ko\n");
    const order = moduleLoadOrder(join(dir, "modules"), ["vsock_loopback", "vmw_vsock_virtio_transport"]);
    expect(order.map((m) => m.name)).toEqual([
      "vsock",
      "vmw_vsock_virtio_transport_common",
      "vsock_loopback",
      "virtio_ring",
      "vmw_vsock_virtio_transport",
    ]);
  });

  it("says which module is missing, and finds cycles", () => {
    module("a.ko", "b");
    module("b.ko", "a");
    module("c.ko", "nowhere");
    expect(() => moduleLoadOrder(join(dir, "modules"), ["c"])).toThrow(
      "kernel module nowhere is neither in the package nor built in",
    );
    expect(() => moduleLoadOrder(join(dir, "modules"), ["a"])).toThrow("in a cycle at a");
  });
});

describe("addPackageTree", () => {
  // A pnpm-style store: every package in .pnpm/<id>/node_modules/<name>, with its
  // dependencies as symlinks beside it.
  function storePackage(id: string, name: string, deps: Record<string, string>, files: Record<string, string>): string {
    const root = join(dir, "node_modules", ".pnpm", id, "node_modules");
    const pkg = join(root, name);
    write(join(pkg, "package.json").slice(dir.length + 1), JSON.stringify({ name, dependencies: deps }));
    for (const [file, content] of Object.entries(files)) write(join(pkg, file).slice(dir.length + 1), content);
    return pkg;
  }
  function link(fromPackageDir: string, name: string, target: string): void {
    const at = join(fromPackageDir, name.includes("/") ? "../.." : "..", name);
    mkdirSync(dirname(at), { recursive: true });
    symlinkSync(target, at);
  }

  it("lays dependencies out flat, nests a clashing version, and keeps only run-time files", () => {
    const a1 = storePackage(
      "a@1",
      "a",
      {},
      { "index.js": "a1", "index.d.ts": "", "index.js.map": "", "README.md": "" },
    );
    const a2 = storePackage("a@2", "a", {}, { "index.js": "a2", "proto/x.proto": "syntax" });
    const b = storePackage("b@1", "b", { a: "2" }, { "lib/b.js": "b", "test/b.test.js": "", "src/b.ts": "" });
    link(b, "a", a2);
    const native = storePackage(
      "n@1",
      "n",
      {},
      {
        "lib/n.js": "n",
        "binding.gyp": "{}",
        "build/Release/n.node": "ELF",
        "build/Release/obj.target/n.o": "",
        "build/Makefile": "",
        "src/n.cc": "",
      },
    );
    const app = join(dir, "app");
    write("app/package.json", JSON.stringify({ name: "app", dependencies: { a: "1", b: "1", n: "1", skipped: "1" } }));
    write("app/dist/main.js", "main");
    mkdirSync(join(app, "node_modules"));
    symlinkSync(a1, join(app, "node_modules", "a"));
    symlinkSync(b, join(app, "node_modules", "b"));
    symlinkSync(native, join(app, "node_modules", "n"));
    const tree = new ImageTree();
    const count = addPackageTree(tree, app, "opt/app", { skip: new Set(["skipped"]) });
    expect(count).toBe(5);
    const files = tree
      .entries()
      .filter((entry) => entry.type === "file")
      .map((entry) => entry.path);
    expect(files).toEqual([
      "opt/app/dist/main.js",
      "opt/app/node_modules/a/index.js",
      "opt/app/node_modules/a/package.json",
      "opt/app/node_modules/b/lib/b.js",
      "opt/app/node_modules/b/node_modules/a/index.js",
      "opt/app/node_modules/b/node_modules/a/package.json",
      "opt/app/node_modules/b/node_modules/a/proto/x.proto",
      "opt/app/node_modules/b/package.json",
      "opt/app/node_modules/n/build/Release/n.node",
      "opt/app/node_modules/n/lib/n.js",
      "opt/app/node_modules/n/package.json",
      "opt/app/package.json",
    ]);
  });

  it("fails clearly when a required dependency is not installed", () => {
    write("app/package.json", JSON.stringify({ name: "app", dependencies: { gone: "1" } }));
    expect(() => addPackageTree(new ImageTree(), join(dir, "app"), "opt/app")).toThrow(
      "app depends on gone, which is not installed",
    );
  });
});
