// run() and stat() against the real agent through the hybrid-vsock stand-in. The agent
// runs on this machine, so what it reports can be checked against the file system.
import { chmod, lstat, mkdir, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { FileType, StatPathResponseSchema } from "@guestkit/protocol";
import { describe, expect, it } from "vitest";
import { CommandFailedError } from "../src/exec/run.js";
import { Code, GuestError } from "../src/guest-error.js";
import { statFromResponse } from "../src/stat.js";
import { useGuestFixture } from "./guest-fixture.js";

const suite = useGuestFixture({ tempDirPrefix: "guestkit-run-stat-test-" });

describe("run", () => {
  it("collects stdout, stderr and the exit", async () => {
    const result = await suite.guest.client().run(["sh", "-c", "echo out; echo err >&2; exit 5"]);
    expect(result.stdout).toBe("out\n");
    expect(result.stderr).toBe("err\n");
    expect(Buffer.from(result.stdoutBytes).toString()).toBe("out\n");
    expect(result.exit.code).toBe(5);
    expect(result.outputCapped).toBe(false);
  });

  it("input goes to stdin, then EOF", async () => {
    const result = await suite.guest.client().run(["tr", "a-z", "A-Z"], { input: "shout\n" });
    expect(result.stdout).toBe("SHOUT\n");
  });

  it("output past maxOutputBytes is dropped, the command runs to its end", async () => {
    const result = await suite.guest
      .client()
      .run(["sh", "-c", "head -c 3000000 /dev/zero; echo done >&2; exit 4"], { maxOutputBytes: 1000 });
    expect(result.stdoutBytes.byteLength).toBe(1000);
    expect(result.outputCapped).toBe(true);
    expect(result.exit.code).toBe(4);
    expect(result.stderr).toBe("");
  });

  it("check: a non-zero exit throws a CommandFailedError with the result", async () => {
    const client = suite.guest.client();
    const error = await client.run(["sh", "-c", "echo why >&2; exit 3"], { check: true }).catch((caught) => caught);
    expect(error).toBeInstanceOf(CommandFailedError);
    expect(error).toBeInstanceOf(GuestError);
    expect(error.reason).toBe("command-failed");
    expect(error.message).toContain("exited with code 3: why");
    expect(error.result.exit.code).toBe(3);
    expect(error.result.stderr).toBe("why\n");
    const killed = await client.run(["sh", "-c", "kill -TERM $$"], { check: true }).catch((caught) => caught);
    expect(killed.message).toContain("killed by SIGTERM (143)");
    const ok = await client.run(["true"], { check: true });
    expect(ok.exit.code).toBe(0);
  });

  it("check: a command that cannot start says why", async () => {
    const error = await suite.guest
      .client()
      .run(["no-such-command-guestkit"], { check: true })
      .catch((caught) => caught);
    expect(error).toBeInstanceOf(CommandFailedError);
    expect(error.message).toContain("could not start (127)");
  });
});

describe("stat", () => {
  it("a file: type, mode, size, mtime to the nanosecond, owner", async () => {
    const path = join(suite.dir, "file");
    await writeFile(path, "12345");
    await utimes(path, new Date("2024-05-06T07:08:09.123Z"), new Date("2024-05-06T07:08:09.123Z"));
    await chmod(path, 0o4751);
    const local = await stat(path, { bigint: true });
    expect(local.mtimeNs / 1_000_000_000n).toBe(BigInt(Date.parse("2024-05-06T07:08:09Z") / 1000));
    const result = await suite.guest.client().stat(path);
    expect(result).toEqual({
      exists: true,
      type: "file",
      mode: 0o4751,
      size: 5,
      mtime: new Date(Number(local.mtimeNs / 1_000_000n)),
      mtimeNs: local.mtimeNs,
      uid: Number(local.uid),
      gid: Number(local.gid),
      linkTarget: null,
    });
  });

  it("a directory keeps its sticky bit", async () => {
    const sub = join(suite.dir, "sticky");
    await mkdir(sub);
    await chmod(sub, 0o1777);
    const result = await suite.guest.client().stat(sub);
    expect(result).toMatchObject({ exists: true, type: "directory", mode: 0o1777 });
  });

  it("a symlink, and what it points to with followLinks", async () => {
    const target = join(suite.dir, "target");
    await writeFile(target, "abc");
    const link = join(suite.dir, "link");
    await symlink("target", link);
    const client = suite.guest.client();
    const asLink = await client.stat(link);
    expect(asLink).toMatchObject({ exists: true, type: "symlink", linkTarget: "target" });
    expect(asLink.exists && asLink.mtimeNs).toBe((await lstat(link, { bigint: true })).mtimeNs);
    const followed = await client.stat(link, { followLinks: true });
    expect(followed).toMatchObject({ exists: true, type: "file", size: 3, linkTarget: null });
  });

  it("a missing path is a result, not an error", async () => {
    expect(await suite.guest.client().stat(join(suite.dir, "missing"))).toEqual({ exists: false });
  });

  it("special files get their type", async () => {
    const client = suite.guest.client();
    expect(await client.stat("/dev/null")).toMatchObject({ exists: true, type: "char-device" });
    expect(await client.stat(suite.guest.agent.socketPath)).toMatchObject({ exists: true, type: "socket" });
  });

  it("a bad path is INVALID_ARGUMENT before anything is sent", async () => {
    const error = await suite.guest
      .client()
      .stat("")
      .catch((caught) => caught);
    expect(error).toBeInstanceOf(GuestError);
    expect(error.code).toBe(Code.INVALID_ARGUMENT);
  });

  it("in-band errors become typed errors (ONE errno mapping)", () => {
    const denied = create(StatPathResponseSchema, { error: "permission denied", errorCode: "EACCES" });
    expect(() => statFromResponse(denied, "stat /x")).toThrow(
      expect.objectContaining({ code: Code.PERMISSION_DENIED, reason: "permission-denied" }),
    );
    const loop = create(StatPathResponseSchema, { error: "too many links", errorCode: "ELOOP" });
    expect(() => statFromResponse(loop, "stat /x")).toThrow(
      expect.objectContaining({ code: Code.FAILED_PRECONDITION }),
    );
  });

  it("an agent that knows only the original fields: no type, times or owner are made up", () => {
    const legacy = create(StatPathResponseSchema, { exists: true, isFile: true, mode: 0o644, size: 10n });
    expect(statFromResponse(legacy, "stat /x")).toEqual({
      exists: true,
      type: "file",
      mode: 0o644,
      size: 10,
      mtime: null,
      mtimeNs: null,
      uid: null,
      gid: null,
      linkTarget: null,
    });
    const typed = create(StatPathResponseSchema, { exists: true, fileType: FileType.FIFO, mode: 0o100644 });
    expect(statFromResponse(typed, "stat /x")).toMatchObject({ type: "fifo", mode: 0o644 });
  });
});
