// The small parsers behind Exec's `user` and `signal`: user lookup in real passwd and
// group files (written to a temp dir), and signal names.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSignalName, signalNameOf } from "../src/exec/signal-names.js";
import { resolveUser, UnknownUserError } from "../src/exec/user-database.js";

let dir: string;
let files: { passwdPath: string; groupPath: string };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "guestkit-users-"));
  files = { passwdPath: join(dir, "passwd"), groupPath: join(dir, "group") };
  writeFileSync(
    files.passwdPath,
    [
      "root:x:0:0:root:/root:/bin/bash",
      "# a comment",
      "broken line",
      "alice:x:1000:1000:Alice,,,:/home/alice:/bin/sh",
      "svc:x:999:998::/var/lib/svc:/usr/sbin/nologin",
      "",
    ].join("\n"),
  );
  writeFileSync(files.groupPath, ["root:x:0:", "alice:x:1000:", "adm:x:4:alice", "svcgroup:x:998:", ""].join("\n"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("resolveUser", () => {
  it("finds a user by name, with its primary group and login variables", async () => {
    expect(await resolveUser("alice", files)).toEqual({
      uid: 1000,
      gid: 1000,
      env: { HOME: "/home/alice", USER: "alice", LOGNAME: "alice" },
    });
  });

  it("finds a user by uid", async () => {
    expect(await resolveUser("999", files)).toMatchObject({ uid: 999, gid: 998, env: { USER: "svc" } });
  });

  it("takes a group by name or number after the colon", async () => {
    expect(await resolveUser("alice:adm", files)).toMatchObject({ uid: 1000, gid: 4 });
    expect(await resolveUser("alice:5", files)).toMatchObject({ uid: 1000, gid: 5 });
  });

  it("accepts uid:gid with no passwd entry, with HOME=/ and no user names", async () => {
    expect(await resolveUser("4242:4343", files)).toEqual({ uid: 4242, gid: 4343, env: { HOME: "/" } });
  });

  it("refuses a bare uid with no passwd entry rather than guess a group", async () => {
    await expect(resolveUser("4242", files)).rejects.toThrow(/no \/etc\/passwd entry/);
  });

  it("refuses unknown names and malformed specs with a one-line reason", async () => {
    await expect(resolveUser("mallory", files)).rejects.toBeInstanceOf(UnknownUserError);
    await expect(resolveUser("alice:nogroup", files)).rejects.toThrow(/unknown group "nogroup"/);
    await expect(resolveUser(":1000", files)).rejects.toThrow(/bad user/);
    await expect(resolveUser("alice:", files)).rejects.toThrow(/bad user/);
    await expect(resolveUser("4294967295:0", files)).rejects.toThrow(/out of range/);
  });

  it("does not take a comment or a broken line for a user", async () => {
    await expect(resolveUser("broken line", files)).rejects.toBeInstanceOf(UnknownUserError);
  });
});

describe("signal names", () => {
  it("accepts names with or without SIG, in any case", () => {
    expect(parseSignalName("TERM")).toEqual({ name: "SIGTERM", number: 15 });
    expect(parseSignalName("SIGINT")).toEqual({ name: "SIGINT", number: 2 });
    expect(parseSignalName("kill")).toEqual({ name: "SIGKILL", number: 9 });
  });

  it("refuses what is not a signal of this platform", () => {
    expect(parseSignalName("NOPE")).toBeUndefined();
    expect(parseSignalName("9")).toBeUndefined();
    expect(parseSignalName("")).toBeUndefined();
    expect(parseSignalName("toString")).toBeUndefined();
  });

  it("names signal numbers", () => {
    expect(signalNameOf(9)).toBe("SIGKILL");
    expect(signalNameOf(1)).toBe("SIGHUP");
  });
});
