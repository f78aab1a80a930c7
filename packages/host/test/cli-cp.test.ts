// `guestctl cp` as a real process against the real agent through the hybrid-vsock
// stand-in. The agent runs on this machine, so "guest" paths are real paths here too:
// what landed is checked with lstat directly.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { chown, mkdir, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { guestctlCommand, runCli, startPty, stopAll } from "./cli-support.js";
import { useGuestFixture } from "./guest-fixture.js";

const suite = useGuestFixture({ tempDirPrefix: "guestkit-cli-cp-", afterEachTest: stopAll });

const cp = (args: string[]) => runCli(["--target", suite.guest.target, "cp", ...args]);

// A tree with what a copy must keep: nested directories with their own modes, an
// executable, a private file, relative symlinks (to a file and to a directory), and
// sub-second modification times on everything.
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, "bin"), { recursive: true });
  await mkdir(join(root, "etc", "deep"), { recursive: true });
  await writeFile(join(root, "bin", "tool"), "#!/bin/sh\necho tool\n", { mode: 0o755 });
  await writeFile(join(root, "etc", "secret"), "s3cret\n", { mode: 0o600 });
  await writeFile(join(root, "etc", "deep", "data.bin"), Buffer.alloc(300_000, 7));
  await symlink("bin/tool", join(root, "tool-link"));
  await symlink("../bin", join(root, "etc", "bin-link"));
  execFileSync("chmod", ["0750", join(root, "etc")]);
  let second = 1_600_000_000;
  for (const path of ["bin/tool", "etc/secret", "etc/deep/data.bin", "etc/deep", "bin", "etc", "."]) {
    second += 1000;
    await utimes(join(root, path), second + 0.25, second + 0.125);
  }
}

interface Entry {
  type: string;
  mode: number;
  mtimeMs?: number;
  content?: string;
  link?: string;
}

// Every entry under `root` as a map of relative path -> what a copy must keep.
function describeTree(root: string): Record<string, Entry> {
  const entries: Record<string, Entry> = {};
  const visit = (relative: string) => {
    const path = relative === "" ? root : join(root, relative);
    const info = lstatSync(path);
    const entry: Entry = {
      type: info.isDirectory() ? "dir" : info.isSymbolicLink() ? "link" : "file",
      mode: info.mode & 0o7777,
    };
    if (info.isSymbolicLink()) entry.link = readlinkSync(path);
    else entry.mtimeMs = info.mtimeMs;
    if (info.isFile()) entry.content = createHash("sha256").update(readFileSync(path)).digest("hex");
    entries[relative === "" ? "." : relative] = entry;
    if (info.isDirectory()) for (const name of readdirSync(path)) visit(relative === "" ? name : join(relative, name));
  };
  visit("");
  // A symlink's own mode is always 0777 on Linux; its time is when the copy made it.
  for (const entry of Object.values(entries)) if (entry.type === "link") entry.mode = 0o777;
  return entries;
}

describe("cp", () => {
  it("copies a tree with symlinks, modes and times into the guest and back, exactly", async () => {
    await makeTree(join(suite.dir, "tree"));
    await mkdir(join(suite.dir, "guest"));
    const up = await cp([join(suite.dir, "tree"), `guest:${join(suite.dir, "guest")}/`]);
    expect(up).toMatchObject({ code: 0, stdout: "", stderr: "" });
    expect(describeTree(join(suite.dir, "guest", "tree"))).toEqual(describeTree(join(suite.dir, "tree")));

    const down = await cp([`guest:${join(suite.dir, "guest", "tree")}`, join(suite.dir, "back")]);
    expect(down).toMatchObject({ code: 0, stdout: "", stderr: "" });
    expect(describeTree(join(suite.dir, "back"))).toEqual(describeTree(join(suite.dir, "tree")));
  });

  it("SRC/. copies a directory's contents; --json says what was done", async () => {
    await makeTree(join(suite.dir, "tree"));
    await mkdir(join(suite.dir, "guest"));
    const result = await cp(["--json", `${join(suite.dir, "tree")}/.`, `guest:${join(suite.dir, "guest")}`]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      source: `${join(suite.dir, "tree")}/.`,
      destination: `guest:${join(suite.dir, "guest")}`,
      direction: "to-guest",
      bytes: 300_000 + 7 + 20,
      entries: 8,
      skipped: [],
      skippedCount: 0,
      partial: false,
      changed: [],
      changedCount: 0,
    });
    expect(readdirSync(join(suite.dir, "guest")).sort()).toEqual(["bin", "etc", "tool-link"]);
  });

  it("-L copies what symlinks point to", async () => {
    await makeTree(join(suite.dir, "tree"));
    const result = await cp(["-L", `guest:${join(suite.dir, "tree", "tool-link")}`, join(suite.dir, "copied")]);
    expect(result.code).toBe(0);
    expect(lstatSync(join(suite.dir, "copied")).isFile()).toBe(true);
    expect(readFileSync(join(suite.dir, "copied"), "utf8")).toBe("#!/bin/sh\necho tool\n");
    expect(lstatSync(join(suite.dir, "copied")).mode & 0o777).toBe(0o755);

    const plain = await cp([`guest:${join(suite.dir, "tree", "tool-link")}`, join(suite.dir, "as-link")]);
    expect(plain.code).toBe(0);
    expect(readlinkSync(join(suite.dir, "as-link"))).toBe("bin/tool");
  });

  it("-a keeps setuid/setgid bits; without it they are dropped", async () => {
    await mkdir(join(suite.dir, "tree", "shared"), { recursive: true });
    await writeFile(join(suite.dir, "tree", "suid"), "x", { mode: 0o755 });
    execFileSync("chmod", ["4755", join(suite.dir, "tree", "suid")]);
    execFileSync("chmod", ["2775", join(suite.dir, "tree", "shared")]);
    await mkdir(join(suite.dir, "guest"));
    expect((await cp(["-a", join(suite.dir, "tree"), `guest:${join(suite.dir, "guest", "kept")}`])).code).toBe(0);
    expect((await cp([join(suite.dir, "tree"), `guest:${join(suite.dir, "guest", "plain")}`])).code).toBe(0);
    const mode = (path: string) => lstatSync(join(suite.dir, "guest", path)).mode & 0o7777;
    expect([mode("kept/suid"), mode("kept/shared")]).toEqual([0o4755, 0o2775]);
    expect([mode("plain/suid"), mode("plain/shared")]).toEqual([0o755, 0o775]);
  });

  it("-a keeps ownership; without it the copy belongs to the receiver", async () => {
    await writeFile(join(suite.dir, "owned"), "x");
    await chown(join(suite.dir, "owned"), 1234, 5678);
    await mkdir(join(suite.dir, "guest"));
    expect((await cp(["-a", join(suite.dir, "owned"), `guest:${join(suite.dir, "guest", "kept")}`])).code).toBe(0);
    expect((await cp([join(suite.dir, "owned"), `guest:${join(suite.dir, "guest", "plain")}`])).code).toBe(0);
    const kept = lstatSync(join(suite.dir, "guest", "kept"));
    expect([kept.uid, kept.gid]).toEqual([1234, 5678]);
    const plain = lstatSync(join(suite.dir, "guest", "plain"));
    expect([plain.uid, plain.gid]).toEqual([process.getuid?.(), process.getgid?.()]);
  });

  it("lists skipped special files on stderr and still succeeds", async () => {
    await mkdir(join(suite.dir, "tree"));
    await writeFile(join(suite.dir, "tree", "file"), "f");
    execFileSync("mkfifo", [join(suite.dir, "tree", "pipe")]);
    const result = await cp([`guest:${join(suite.dir, "tree")}`, join(suite.dir, "back")]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("guestctl: skipped tree/pipe:");
    expect(result.stderr).toContain("1 entry was left out; the copy is partial");
    expect(readdirSync(join(suite.dir, "back"))).toEqual(["file"]);
  });

  it("shows a progress bar for a large copy on a terminal, and nothing without one", async () => {
    await writeFile(join(suite.dir, "big"), Buffer.alloc(24 * 1024 * 1024, 1));
    await mkdir(join(suite.dir, "guest"));
    const quiet = await cp([join(suite.dir, "big"), `guest:${join(suite.dir, "guest", "quiet")}`]);
    expect(quiet).toMatchObject({ code: 0, stdout: "", stderr: "" });

    const pty = startPty(
      `${guestctlCommand(["--target", suite.guest.target, "cp", join(suite.dir, "big"), `guest:${join(suite.dir, "guest", "shown")}`])}; echo "rc=$?"`,
      {
        rows: 24,
        cols: 100,
      },
    );
    await pty.waitFor("rc=");
    expect(await pty.exited).toBe(0);
    const output = pty.output();
    expect(output).toContain("rc=0");
    expect(output).toMatch(/\[[= ]+\] +\d+% /);
    expect(output).toMatch(/copied 24\.0 MiB in 1 entry/);
    expect(lstatSync(join(suite.dir, "guest", "shown")).size).toBe(24 * 1024 * 1024);
  });

  it("errors: one line, a clear reason, nothing written", async () => {
    const missing = await cp([`guest:${join(suite.dir, "nope")}`, join(suite.dir, "out")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^guestctl: .*nope.*\n$/);
    expect(readdirSync(suite.dir)).toEqual([]);

    const both = await cp([`guest:${suite.dir}/a`, `guest:${suite.dir}/b`]);
    expect(both).toMatchObject({
      code: 2,
      stderr: "guestctl: exactly one of SRC and DST must be a guest path, written guest:PATH\n",
    });
    const neither = await cp([`${suite.dir}/a`, `${suite.dir}/b`]);
    expect(neither.code).toBe(2);
    const relative = await cp(["guest:relative/path", join(suite.dir, "out")]);
    expect(relative).toMatchObject({
      code: 2,
      stderr: "guestctl: the guest path must be absolute: guest:relative/path\n",
    });
    const unreachable = await runCli([
      "--target",
      `unix:${join(suite.dir, "no.sock")}`,
      "cp",
      "guest:/etc/hostname",
      join(suite.dir, "out"),
    ]);
    expect(unreachable.code).toBe(255);
    expect(unreachable.stderr).toContain("no such socket");
    expect(readdirSync(suite.dir)).toEqual([]);
  });
});
