// `guestctl proxy`: a plain gRPC endpoint in front of an agent behind hybrid vsock,
// probed with `buf curl` (our stand-in for grpcurl) and used by guestctl itself.
import { execFile } from "node:child_process";
import { existsSync, lstatSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { BUF, runCli, startCli, stopAll } from "./cli-support.js";
import { useGuestFixture } from "./guest-fixture.js";

const run = promisify(execFile);

const suite = useGuestFixture({ tempDirPrefix: "guestkit-cli-proxy-", afterEachTest: stopAll });

function startProxy(listen: string) {
  const proxy = startCli(["--target", suite.guest.target, "proxy", "--listen", listen]);
  return { proxy, ready: proxy.waitForOutput("(stop with Ctrl-C)", "stderr") };
}

describe("proxy", () => {
  it("serves buf curl over a Unix socket, through the hvsock handshake, and cleans up on SIGINT", async () => {
    const socket = join(suite.dir, "agent.sock");
    const { proxy, ready } = startProxy(`unix:${socket}`);
    await ready;
    expect(proxy.stderr()).toBe(`guestctl: proxy on unix:${socket} -> ${suite.guest.target} (stop with Ctrl-C)\n`);
    // Only our own user may use it: it is root in the guest.
    expect(lstatSync(socket).mode & 0o077).toBe(0);
    const before = suite.guest.endpoint.stats().joined;

    const { stdout } = await run(BUF, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--unix-socket",
      socket,
      "--list-services",
      "http://x",
    ]);
    expect(stdout.split("\n")).toContain("guest.GuestService");
    expect(stdout.split("\n")).toContain("grpc.health.v1.Health");
    const stat = await run(BUF, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--unix-socket",
      socket,
      "-d",
      '{"path": "/tmp"}',
      "http://x/guest.GuestService/StatPath",
    ]);
    expect(JSON.parse(stat.stdout)).toMatchObject({ exists: true, isDir: true, mode: 0o1777 });
    // Each connection went through the VMM stand-in's CONNECT/OK.
    expect(suite.guest.endpoint.stats().joined).toBeGreaterThan(before);

    const exec = await runCli(["--target", `unix:${socket}`, "exec", "--", "echo", "through the proxy"]);
    expect(exec).toMatchObject({ code: 0, stdout: "through the proxy\n" });

    proxy.child.kill("SIGINT");
    const result = await proxy.result;
    expect(result.code).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });

  it("serves a loopback TCP port (0 picks one, and it is printed); SIGTERM stops it", async () => {
    const { proxy, ready } = startProxy("tcp:127.0.0.1:0");
    await ready;
    const port = /proxy on tcp:127\.0\.0\.1:(\d+) /.exec(proxy.stderr())?.[1];
    expect(Number(port)).toBeGreaterThan(0);
    const { stdout } = await run(BUF, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--list-services",
      `http://127.0.0.1:${port}`,
    ]);
    expect(stdout.split("\n")).toContain("guest.GuestService");
    proxy.child.kill("SIGTERM");
    expect((await proxy.result).code).toBe(0);
  });

  it("on a TCP port, only this user and root get through: another local user is refused", async () => {
    const { proxy, ready } = startProxy("tcp:127.0.0.1:0");
    await ready;
    const target = `tcp:127.0.0.1:${/proxy on tcp:127\.0\.0\.1:(\d+) /.exec(proxy.stderr())?.[1]}`;
    // Any user of this machine can connect to a loopback port; through the proxy that
    // would be root in the guest.
    const asNobody = await runCli(["--target", target, "--connect-timeout", "2", "exec", "--", "id", "-u"], {
      uid: 65534,
    });
    expect(asNobody.stdout).toBe("");
    expect(asNobody.code).toBe(255);
    await proxy.waitForOutput("guestctl: proxy: refused a connection from uid 65534: only uid", "stderr");
    const asUs = await runCli(["--target", target, "exec", "--", "echo", "let in"]);
    expect(asUs).toMatchObject({ code: 0, stdout: "let in\n" });
    proxy.child.kill("SIGTERM");
    expect((await proxy.result).code).toBe(0);
  });

  it("reports a connection it cannot dial and keeps serving", async () => {
    const socket = join(suite.dir, "agent.sock");
    const proxy = startCli(["--target", suite.guest.endpoint.target(2299), "proxy", "--listen", `unix:${socket}`]);
    await proxy.waitForOutput("(stop with Ctrl-C)", "stderr");
    const failed = await runCli(["--target", `unix:${socket}`, "stat", "/"]);
    expect(failed.code).toBe(255);
    await proxy.waitForOutput("no agent listening on port 2299", "stderr");
    expect(proxy.child.exitCode).toBe(null);
    proxy.child.kill("SIGINT");
    expect((await proxy.result).code).toBe(0);
  });

  it("refuses anything but a Unix socket or a loopback address", async () => {
    for (const listen of ["tcp:0.0.0.0:0", "tcp:10.1.2.3:9000", "tcp:example.com:80", "vsock:2222", "unix:"]) {
      const result = await runCli(["--target", suite.guest.target, "proxy", "--listen", listen]);
      expect(result.code, listen).toBe(2);
      expect(result.stderr, listen).toMatch(/^guestctl: bad --listen .*expected unix:PATH or tcp:127\.0\.0\.1:PORT/);
    }
    const missing = await runCli(["--target", suite.guest.target, "proxy"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--listen");
  });

  it("replaces a stale socket, but not a live one or a file that is not a socket", async () => {
    const file = join(suite.dir, "file");
    await writeFile(file, "keep me");
    const onFile = await runCli(["--target", suite.guest.target, "proxy", "--listen", `unix:${file}`]);
    expect(onFile).toMatchObject({
      code: 1,
      stderr: `guestctl: ${file} exists and is not a socket; not replacing it\n`,
    });

    const live = join(suite.dir, "live.sock");
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(live, resolve));
    try {
      const onLive = await runCli(["--target", suite.guest.target, "proxy", "--listen", `unix:${live}`]);
      expect(onLive.code).toBe(1);
      expect(onLive.stderr).toContain("is in use");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }

    // A socket file nobody listens on any more: a proxy that was killed left it.
    const killed = startCli(["--target", suite.guest.target, "proxy", "--listen", `unix:${join(suite.dir, "x.sock")}`]);
    await killed.waitForOutput("(stop with Ctrl-C)", "stderr");
    killed.child.kill("SIGKILL");
    await killed.result;
    expect(existsSync(join(suite.dir, "x.sock"))).toBe(true);
    const { proxy, ready } = startProxy(`unix:${join(suite.dir, "x.sock")}`);
    await ready;
    proxy.child.kill("SIGINT");
    expect((await proxy.result).code).toBe(0);
    expect(existsSync(join(suite.dir, "x.sock"))).toBe(false);
  });
});
