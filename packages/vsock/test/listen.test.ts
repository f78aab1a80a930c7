// What this machine allows: AF_VSOCK bind and listen work here, but nothing can connect
// (no loopback transport, and the host side is not ours). Accepting connections is
// tested inside a QEMU guest (tests/qemu).
import { afterEach, describe, expect, it } from "vitest";
import { listenVsock, VMADDR_PORT_ANY, VsockError, type VsockServer } from "../src/index.js";
import { openFdCount } from "./fd-count.js";

const servers: VsockServer[] = [];

function listen(port: number, backlog?: number): VsockServer {
  const server = listenVsock(port, backlog === undefined ? {} : { backlog });
  servers.push(server);
  return server;
}

function closed(server: VsockServer): Promise<void> {
  return new Promise((resolve) => {
    server.once("close", resolve);
    server.close();
  });
}

afterEach(async () => {
  await Promise.all(
    servers
      .splice(0)
      .filter((server) => server.listening)
      .map(closed),
  );
});

describe("listenVsock", () => {
  it("binds a port the kernel picks and reports it", () => {
    const server = listen(VMADDR_PORT_ANY);
    expect(server.listening).toBe(true);
    expect(server.port).toBeGreaterThan(0);
    expect(server.port).toBeLessThan(VMADDR_PORT_ANY);
  });

  it("binds the exact port asked for, and the port is free again after close", async () => {
    const picked = listen(VMADDR_PORT_ANY);
    const port = picked.port;
    await closed(picked);
    const server = listen(port);
    expect(server.port).toBe(port);
  });

  it("refuses a port that is in use with EADDRINUSE, and leaks nothing", () => {
    const server = listen(VMADDR_PORT_ANY);
    const before = openFdCount();
    let caught: unknown;
    try {
      listen(server.port);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(VsockError);
    expect(caught).toMatchObject({ code: "EADDRINUSE", syscall: "listen" });
    expect((caught as Error).message).toBe(`vsock listen on port ${server.port}: address already in use (EADDRINUSE)`);
    expect(openFdCount()).toBe(before);
    expect(server.listening).toBe(true);
  });

  it("frees its fd on close: 200 listen/close cycles leave the fd count where it was", async () => {
    // The first listen may make libuv open its own long-lived fds; count after it.
    await closed(listen(VMADDR_PORT_ANY));
    const before = openFdCount();
    for (let i = 0; i < 200; i++) {
      const server = listenVsock(VMADDR_PORT_ANY);
      expect(openFdCount()).toBe(before + 1);
      await closed(server);
    }
    expect(openFdCount()).toBe(before);
  });

  it("emits close once, and a second close is harmless", async () => {
    const server = listen(VMADDR_PORT_ANY);
    let closes = 0;
    server.on("close", () => closes++);
    server.close();
    server.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(closes).toBe(1);
    expect(server.listening).toBe(false);
  });

  it.each([
    [-1, "port must be an integer from 0 to 4294967295, got -1"],
    [1.5, "port must be an integer from 0 to 4294967295, got 1.5"],
    [2 ** 32, "port must be an integer from 0 to 4294967295, got 4294967296"],
    [Number.NaN, "port must be an integer from 0 to 4294967295, got NaN"],
  ])("rejects port %s before any system call", (port, message) => {
    const before = openFdCount();
    expect(() => listenVsock(port)).toThrow(new RangeError(`vsock listen: ${message}`));
    expect(openFdCount()).toBe(before);
  });

  it.each([0, -5, 70000, 2.5])("rejects backlog %s", (backlog) => {
    expect(() => listenVsock(VMADDR_PORT_ANY, { backlog })).toThrow(
      `vsock listen: backlog must be an integer from 1 to 65535, got ${backlog}`,
    );
  });
});
