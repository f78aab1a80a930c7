// Who may connect to the agent, which runs commands as root: only its own user through
// the Unix socket, and on TCP (loopback too) only a caller holding the token. Attacks
// come from a real unprivileged process: a command the agent itself runs as nobody,
// which is the way a guest's unprivileged user gets to try.
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { GuestServiceClient } from "@guestkit/protocol";
import { type AgentProcess, startAgent } from "@guestkit/testkit";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runExec, text } from "./exec-client.js";

const GUESTCTL_BIN = fileURLToPath(new URL("../../host/dist/cli/start.js", import.meta.url));
const NOBODY = 65534;
const TOKEN = "the-agent-token";

let dir: string;
const agents: AgentProcess[] = [];
const clients: GuestServiceClient[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "guestkit-who-may-connect-"));
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await Promise.all(agents.splice(0).map((agent) => agent.stop()));
  rmSync(dir, { recursive: true, force: true });
});

async function started(options: Parameters<typeof startAgent>[0]): Promise<AgentProcess> {
  const agent = await startAgent(options);
  agents.push(agent);
  return agent;
}

function tokenFile(mode: number, name = `token-${mode.toString(8)}`): string {
  const path = join(dir, name);
  writeFileSync(path, `${TOKEN}\n`);
  chmodSync(path, mode);
  return path;
}

// A client that sends `token` on every call, as `authorization: Bearer <token>`.
function client(address: string, token?: string): GuestServiceClient {
  const interceptor: grpc.Interceptor = (options, next) =>
    new grpc.InterceptingCall(next(options), {
      start(metadata, listener, forward) {
        if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
        forward(metadata, listener);
      },
    });
  const made = new GuestServiceClient(address, grpc.credentials.createInsecure(), { interceptors: [interceptor] });
  clients.push(made);
  return made;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return address.port;
}

// What an unprivileged local user would run: guestctl against the agent's TCP port.
function attack(tcp: string): string[] {
  return [process.execPath, GUESTCTL_BIN, "--target", tcp, "--connect-timeout", "5", "exec", "--", "id", "-u"];
}

describe("TCP listeners (loopback included)", () => {
  it("a nobody process cannot run commands through a loopback TCP listener", async () => {
    const port = await freePort();
    const tcp = `tcp:127.0.0.1:${port}`;

    // Without a token the agent does not start at all.
    const refused = await started({ args: ["--listen", tcp] }).catch((error: Error) => error);
    if (!(refused instanceof Error)) {
      // It started: show what nobody can do with it.
      const run = spawn(attack(tcp)[0] as string, attack(tcp).slice(1), { uid: NOBODY, gid: NOBODY });
      const output = await outputOf(run);
      expect.fail(`the agent served ${tcp} without a token; nobody ran \`id -u\` through it: ${output}`);
    }
    expect(refused.message).toContain("guest-agent exited (2)");
    expect(refused.message).toContain(`refusing to listen on ${tcp} without a token`);
    expect(refused.message).toContain("--token-file");

    // With a token: the agent's own command, run as nobody, connects without it and is refused.
    const agent = await started({ args: ["--listen", tcp, "--token-file", tokenFile(0o600)] });
    const guest = client(`unix:${agent.socketPath}`, TOKEN);
    const asNobody = await runExec(guest, { command: attack(tcp), user: "nobody", cwd: "/" });
    expect(asNobody.exitCode, text(asNobody.stderr)).not.toBe(0);
    expect(text(asNobody.stdout)).toBe("");
    expect(text(asNobody.stderr)).toMatch(/unauthenticated|missing or wrong token/i);
    // Nor can nobody read the token.
    const peek = await runExec(guest, { command: ["cat", join(dir, "token-600")], user: "nobody", cwd: "/" });
    expect(peek.exitCode).not.toBe(0);
    expect(text(peek.stdout)).toBe("");

    // The listener is real: with the token, the same port runs commands; without, UNAUTHENTICATED.
    const withToken = await runExec(client(`127.0.0.1:${port}`, TOKEN), { command: ["id", "-u"] });
    expect(text(withToken.stdout)).toBe("0\n");
    const without = await runExec(client(`127.0.0.1:${port}`), { command: ["id", "-u"] });
    expect(without.status.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(without.kinds).toEqual([]);
  });
});

describe("the token file", () => {
  it.each([0o644, 0o640, 0o604, 0o620].map((mode) => [mode.toString(8), mode]))(
    "mode 0%s (others than its owner can read or write it) is refused",
    async (_, mode) => {
      const path = tokenFile(mode);
      const error = await started({ args: ["--token-file", path] }).catch((caught: Error) => caught);
      expect(error).toBeInstanceOf(Error);
      const message = (error as Error).message;
      expect(message).toContain("guest-agent exited (2)");
      expect(message).toContain(`the token file ${path} has mode 0${mode.toString(8)}`);
      expect(message).toContain(`chmod 600 ${path}`);
    },
  );

  it("a file owned by another user is refused, even with mode 0600", async () => {
    const path = tokenFile(0o600);
    chownSync(path, NOBODY, NOBODY);
    const error = await started({ args: ["--token-file", path] }).catch((caught: Error) => caught);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(`the token file ${path} belongs to uid ${NOBODY}`);
  });

  it.each([0o600, 0o400].map((mode) => [mode.toString(8), mode]))(
    "mode 0%s is accepted, and the token is then required",
    async (_, mode) => {
      const agent = await started({ args: ["--token-file", tokenFile(mode)] });
      const ok = await runExec(client(`unix:${agent.socketPath}`, TOKEN), { command: ["echo", "in"] });
      expect(text(ok.stdout)).toBe("in\n");
      const wrong = await runExec(client(`unix:${agent.socketPath}`, "guess"), { command: ["echo", "in"] });
      expect(wrong.status.code).toBe(grpc.status.UNAUTHENTICATED);
    },
  );
});

describe("the Unix socket", () => {
  it("under umask 000 it is never at its path with a mode looser than 0600 (20 starts)", async () => {
    // The agent itself runs with umask 000, as some init systems start services.
    const launcher = join(dir, "node");
    writeFileSync(launcher, `#!/bin/sh\numask 000\nexec "${process.execPath}" "$@"\n`, { mode: 0o755 });
    const seen: string[][] = [];
    for (let start = 0; start < 20; start += 1) {
      const socketDir = mkdtempSync(join(dir, "sock-"));
      chmodSync(socketDir, 0o755);
      const socketPath = join(socketDir, "agent.sock");
      const watcher = watchModes(socketPath);
      await watcher.ready;
      const agent = await started({ socketPath, env: { ...process.env, GUESTKIT_NODE: launcher } });
      const modes = await watcher.modes;
      seen.push(modes);
      await agent.stop();
      agents.splice(agents.indexOf(agent), 1);
    }
    // Every start was watched from before the socket existed, and each mode it had there is 0600.
    expect(seen.every((modes) => modes.length > 0)).toBe(true);
    expect(seen.flat().filter((mode) => mode !== "600")).toEqual([]);
  }, 120_000);
});

// A separate process polls `path` with lstat as fast as it can, from before the socket
// exists until it is 0600 (or 3 s after it appeared), and reports every mode it saw.
function watchModes(path: string): { ready: Promise<void>; modes: Promise<string[]> } {
  const script = `
    const { lstatSync } = require("node:fs");
    const path = process.argv[1];
    process.stdout.write("watching\\n");
    const modes = new Set();
    const giveUp = Date.now() + 20000;
    let info;
    while (!(info = lstatSync(path, { throwIfNoEntry: false })) && Date.now() < giveUp);
    const appeared = Date.now();
    while (info) {
      const mode = (info.mode & 0o777).toString(8);
      modes.add(mode);
      if (mode === "600" || Date.now() - appeared > 3000) break;
      info = lstatSync(path, { throwIfNoEntry: false });
    }
    process.stdout.write(JSON.stringify([...modes]) + "\\n");
  `;
  const child = spawn(process.execPath, ["-e", script, path], { stdio: ["ignore", "pipe", "inherit"] });
  let output = "";
  child.stdout.setEncoding("utf8");
  const ready = new Promise<void>((resolve) => {
    child.stdout.on("data", (chunk: string) => {
      output += chunk;
      if (output.startsWith("watching\n")) resolve();
    });
  });
  const modes = new Promise<string[]>((resolve, reject) => {
    child.once("exit", () => {
      const last = output.trim().split("\n").at(-1) ?? "";
      try {
        resolve(JSON.parse(last) as string[]);
      } catch {
        reject(new Error(`the watcher printed ${JSON.stringify(output)}`));
      }
    });
  });
  return { ready, modes };
}

function outputOf(child: ChildProcess): Promise<string> {
  let output = "";
  child.stdout?.setEncoding("utf8");
  child.stderr?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr?.on("data", (chunk: string) => {
    output += chunk;
  });
  return new Promise((resolve) => child.once("close", (code) => resolve(`exit ${code}: ${output}`)));
}
