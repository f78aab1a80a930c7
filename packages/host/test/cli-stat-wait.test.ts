// `guestctl stat`, `guestctl wait`, reaching targets that are not there, and the
// program-level options, as real processes against the real agent.
import { lstatSync } from "node:fs";
import { chmod, mkdir, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type AgentProcess, startAgent, startHybridVsockEndpoint } from "@guestkit/testkit";
import { describe, expect, it } from "vitest";
import { runCli, startCli, stopAll } from "./cli-support.js";
import { useGuestFixture, waitFor } from "./guest-fixture.js";

const suite = useGuestFixture({ tempDirPrefix: "guestkit-cli-stat-", afterEachTest: stopAll });

describe("stat", () => {
  it("--json: type, mode, size, owner, exact mtime", async () => {
    await writeFile(join(suite.dir, "file"), "hello", { mode: 0o640 });
    await utimes(join(suite.dir, "file"), 1_700_000_000, 1_700_000_000.5);
    const result = await runCli(["--target", suite.guest.target, "stat", "--json", join(suite.dir, "file")]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      path: join(suite.dir, "file"),
      exists: true,
      type: "file",
      mode: 0o640,
      modeOctal: "0640",
      size: 5,
      uid: process.getuid?.(),
      gid: process.getgid?.(),
      mtime: "2023-11-14T22:13:20.500Z",
      mtimeNs: String(lstatSync(join(suite.dir, "file"), { bigint: true }).mtimeNs),
      linkTarget: null,
    });
  });

  it("a symlink, and with -L what it points to; guest: in front is accepted", async () => {
    await mkdir(join(suite.dir, "sub"));
    await symlink("sub", join(suite.dir, "link"));
    const link = JSON.parse(
      (await runCli(["--target", suite.guest.target, "stat", "--json", join(suite.dir, "link")])).stdout,
    );
    expect(link).toMatchObject({ type: "symlink", linkTarget: "sub" });
    const followed = await runCli([
      "--target",
      suite.guest.target,
      "stat",
      "-L",
      "--json",
      `guest:${join(suite.dir, "link")}`,
    ]);
    expect(JSON.parse(followed.stdout)).toMatchObject({ type: "directory", linkTarget: null });
  });

  it("the human form, with setuid/setgid/sticky shown as ls shows them", async () => {
    const result = await runCli(["--target", suite.guest.target, "stat", "/tmp"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Type:     directory\n");
    expect(result.stdout).toContain("Mode:     1777 (drwxrwxrwt)\n");
  });

  it("guest-supplied names cannot drive the terminal: control characters are escaped", async () => {
    await symlink("\x1b]0;pwned\x07", join(suite.dir, "evil"));
    const result = await runCli(["--target", suite.guest.target, "stat", join(suite.dir, "evil")]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Link:     \\x1b]0;pwned\\x07\n");
    expect(result.stdout).not.toContain("\x1b");
  });

  it("a missing path: exit 1, a message, and exists=false in JSON", async () => {
    const human = await runCli(["--target", suite.guest.target, "stat", join(suite.dir, "nope")]);
    expect(human).toMatchObject({
      code: 1,
      stdout: "",
      stderr: `guestctl: no such file or directory: guest:${join(suite.dir, "nope")}\n`,
    });
    const json = await runCli(["--target", suite.guest.target, "stat", "--json", join(suite.dir, "nope")]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toEqual({ path: join(suite.dir, "nope"), exists: false });
  });

  it("a relative path is a usage error", async () => {
    const result = await runCli(["--target", suite.guest.target, "stat", "etc"]);
    expect(result).toMatchObject({ code: 2, stderr: "guestctl: the guest path must be absolute: etc\n" });
  });

  it("options may follow the command: stat --target T PATH", async () => {
    const result = await runCli(["stat", "--target", suite.guest.target, "--json", "/"]);
    expect(JSON.parse(result.stdout)).toMatchObject({ type: "directory" });
  });
});

describe("wait", () => {
  it("exits 0 at once when the agent is up", async () => {
    expect(await runCli(["--target", suite.guest.target, "wait"])).toMatchObject({ code: 0, stdout: "", stderr: "" });
  });

  it("waits for an agent that starts late: the first tries fail, then it answers", async () => {
    const endpoint = await startHybridVsockEndpoint();
    const socketPath = join(suite.dir, "late.sock");
    // The port is routed to a socket nobody listens on yet: the endpoint closes each
    // connection without OK, as a VMM does while the guest's agent is not up.
    endpoint.register(2222, socketPath);
    let agent: AgentProcess | undefined;
    try {
      const cli = startCli(["--target", endpoint.target(2222), "wait", "--timeout", "25"]);
      await waitFor(() => endpoint.stats().accepted >= 3);
      expect(endpoint.stats().joined).toBe(0);
      agent = await startAgent({ socketPath });
      const result = await cli.result;
      expect(result).toMatchObject({ code: 0, stderr: "" });
      expect(endpoint.stats().joined).toBeGreaterThan(0);
    } finally {
      await endpoint.close();
      await agent?.stop();
    }
  });

  it("gives up after --timeout with the reason, exit 1", async () => {
    const endpoint = await startHybridVsockEndpoint();
    try {
      const result = await runCli(["--target", endpoint.target(2222), "wait", "--timeout", "1"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^guestctl: .*not ready within 1000 ms: no agent listening on port 2222.*\n$/);
      expect(endpoint.stats().accepted).toBeGreaterThan(1);
    } finally {
      await endpoint.close();
    }
  });
});

describe("unreachable targets: a clear error in bounded time, exit 255", () => {
  it("a socket file that does not exist", async () => {
    const result = await runCli(["--target", `hvsock:${join(suite.dir, "vm.vsock")}`, "stat", "/"]);
    expect(result.code).toBe(255);
    expect(result.stderr).toBe(`guestctl: hvsock:${join(suite.dir, "vm.vsock")}:2222: no such socket\n`);
  });

  it("a VMM with nothing listening on the guest port", async () => {
    const endpoint = await startHybridVsockEndpoint();
    try {
      const result = await runCli(["--target", endpoint.target(2299), "exec", "--", "true"]);
      expect(result.code).toBe(255);
      expect(result.stderr).toContain("no agent listening on port 2299");
    } finally {
      await endpoint.close();
    }
  });

  it("a VMM that never answers CONNECT: the handshake times out (5 s)", async () => {
    const endpoint = await startHybridVsockEndpoint();
    endpoint.fault = "never-answer";
    try {
      const started = Date.now();
      const result = await runCli(["--target", endpoint.target(2222), "stat", "/"]);
      expect(result.code).toBe(255);
      expect(result.stderr).toContain("no answer to CONNECT 2222 within 5000 ms");
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      await endpoint.close();
    }
  });

  it("a TCP port nobody listens on", async () => {
    const result = await runCli(["--target", "tcp:127.0.0.1:1", "stat", "/"]);
    expect(result.code).toBe(255);
    expect(result.stderr).toBe("guestctl: tcp:127.0.0.1:1: connection refused\n");
  });

  it("--connect-timeout keeps retrying, then reports the last reason", async () => {
    const result = await runCli([
      "--target",
      `unix:${join(suite.dir, "none.sock")}`,
      "--connect-timeout",
      "0.5",
      "stat",
      "/",
    ]);
    expect(result.code).toBe(255);
    expect(result.stderr).toMatch(/no such socket \(gave up after \d+ attempts in \d+ ms\)/);
  });
});

describe("the program", () => {
  it("--version", async () => {
    const result = await runCli(["--version"]);
    expect(result).toMatchObject({ code: 0, stdout: "0.1.0\n" });
  });

  it("--help on every command", async () => {
    for (const command of ["exec", "cp", "stat", "wait", "proxy"]) {
      const result = await runCli([command, "--help"]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`Usage: guestctl ${command}`);
    }
    const main = await runCli(["--help"]);
    expect(main.stdout).toContain("hvsock:PATH[:PORT], vsock:CID[:PORT], unix:PATH or tcp:HOST[:PORT]");
  });

  it("usage errors: one line, exit 2", async () => {
    expect(await runCli(["frobnicate"])).toMatchObject({
      code: 2,
      stderr: "guestctl: unknown command 'frobnicate' (see guestctl --help)\n",
    });
    const badTarget = await runCli(["--target", "hvsock:", "stat", "/"]);
    expect(badTarget.code).toBe(2);
    expect(badTarget.stderr).toMatch(/^guestctl: bad target "hvsock:": .*; expected hvsock:PATH\[:PORT\]/);
    expect(badTarget.stderr.split("\n")).toHaveLength(2);
    const badVsock = await runCli(["--target", "vsock:2", "stat", "/"]);
    expect(badVsock.stderr).toContain("CID 2 is not a guest");
    const noToken = await runCli([
      "--target",
      suite.guest.target,
      "--token-file",
      join(suite.dir, "missing"),
      "stat",
      "/",
    ]);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain("cannot read the token file");
    // As ssh with a private key: a token others can read is refused, before any connection.
    const loose = join(suite.dir, "loose-token");
    await writeFile(loose, "s3cret\n");
    await chmod(loose, 0o644);
    const looseToken = await runCli(["--target", suite.guest.target, "--token-file", loose, "stat", "/"]);
    expect(looseToken.code).toBe(2);
    expect(looseToken.stderr).toContain(`guestctl: the token file ${loose} has mode 0644`);
    expect(looseToken.stderr).toContain(`chmod 600 ${loose}`);
  });
});
