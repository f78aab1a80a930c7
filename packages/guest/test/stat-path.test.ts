import { execFileSync } from "node:child_process";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FileType } from "@guestkit/protocol";
import { describe, expect, it } from "vitest";
import { startTestAgent, statPath, useTestAgent } from "./copy-support.js";

describe("StatPath", () => {
  const suite = useTestAgent();

  it("answers exists=false with no error for a missing path", async () => {
    const response = await statPath(suite.agent.client, join(suite.dir, "missing"));
    expect(response.exists).toBe(false);
    expect(response.error).toBe("");
    expect(response.errorCode).toBe("");
  });

  it("reports /tmp with its sticky bit (01777)", async () => {
    const response = await statPath(suite.agent.client, "/tmp");
    expect(response.exists).toBe(true);
    expect(response.isDir).toBe(true);
    expect(response.fileType).toBe(FileType.DIRECTORY);
    expect(response.mode).toBe(0o1777);
  });

  it("reports a file's size, exact mode, owner and nanosecond mtime", async () => {
    const file = join(suite.dir, "file");
    writeFileSync(file, "hello");
    // touch sets nanoseconds exactly (Node's utimes goes through a double).
    execFileSync("touch", ["-m", "-d", "@1700000000.123456789", file]);
    // chown first: it clears the setuid bit.
    execFileSync("chown", ["1000:1001", file]);
    execFileSync("chmod", ["4755", file]);
    const response = await statPath(suite.agent.client, file);
    expect(response).toMatchObject({
      exists: true,
      isFile: true,
      isDir: false,
      isSymlink: false,
      fileType: FileType.REGULAR,
      size: 5n,
      mode: 0o4755,
      mtime: 1700000000n,
      mtimeNanos: 123456789,
      uid: 1000,
      gid: 1001,
      error: "",
    });
  });

  it("describes a symlink itself, or what it points to with follow_links", async () => {
    const target = join(suite.dir, "target");
    const link = join(suite.dir, "link");
    writeFileSync(target, "twelve bytes");
    symlinkSync("target", link);

    const itself = await statPath(suite.agent.client, link);
    expect(itself).toMatchObject({ exists: true, isSymlink: true, isFile: false, linkTarget: "target" });
    expect(itself.fileType).toBe(FileType.SYMLINK);

    const followed = await statPath(suite.agent.client, link, true);
    expect(followed).toMatchObject({ exists: true, isSymlink: false, isFile: true, size: 12n, linkTarget: "" });
    expect(followed.fileType).toBe(FileType.REGULAR);
  });

  it("answers exists=false when following a dangling symlink", async () => {
    const link = join(suite.dir, "dangling");
    symlinkSync("nowhere", link);
    expect((await statPath(suite.agent.client, link)).isSymlink).toBe(true);
    const followed = await statPath(suite.agent.client, link, true);
    expect(followed.exists).toBe(false);
    expect(followed.error).toBe("");
  });

  it("reports the kind of special files", async () => {
    const fifo = join(suite.dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    expect((await statPath(suite.agent.client, fifo)).fileType).toBe(FileType.FIFO);
    expect((await statPath(suite.agent.client, "/dev/null")).fileType).toBe(FileType.CHAR_DEVICE);
  });

  it("rejects a path with a NUL byte in-band", async () => {
    const response = await statPath(suite.agent.client, `${suite.dir}/a\0b`);
    expect(response.exists).toBe(false);
    expect(response.errorCode).toBe("EINVAL");
    expect(response.error).toMatch(/NUL/);
  });

  it("rejects a relative path in-band", async () => {
    const response = await statPath(suite.agent.client, "relative/path");
    expect(response.errorCode).toBe("EINVAL");
    expect(response.error).toMatch(/not absolute/);
  });

  it("puts other failures in error and error_code", async () => {
    const file = join(suite.dir, "plain");
    writeFileSync(file, "");
    const response = await statPath(suite.agent.client, join(file, "below"));
    expect(response.exists).toBe(false);
    expect(response.errorCode).toBe("ENOTDIR");
    expect(response.error).toMatch(/not a directory/);
  });

  it("sees what the agent's user can see", async () => {
    const unprivileged = await startTestAgent({ asNobody: true });
    try {
      const closed = join(suite.dir, "closed");
      mkdirSync(closed, { mode: 0o700 });
      writeFileSync(join(closed, "inside"), "");
      const response = await statPath(unprivileged.client, join(closed, "inside"));
      expect(response.exists).toBe(false);
      expect(response.errorCode).toBe("EACCES");
    } finally {
      await unprivileged.stop();
    }
  });
});
