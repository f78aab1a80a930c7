// A descriptor the agent inherited from its parent never reaches a command, in either
// mode or as another user. Node 24 itself marks inherited descriptors close-on-exec as
// it starts (seen here: the agent's fdinfo flags), and the launcher closes every
// descriptor above stderr in the child (process-launch.ts) for a runtime that does
// not: this test holds the property whichever layer provides it.
import { spawn } from "node:child_process";
import { mkdtempSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { GuestServiceClient } from "@guestkit/protocol";
import { afterEach, expect, it } from "vitest";
import { GUEST_AGENT_BIN } from "../../testkit/src/agent-process.js";
import { runExec, text } from "./exec-client.js";

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it("keeps a descriptor inherited from the agent's parent away from every command", async () => {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-inherit-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, "agent.sock");
  // stdio[3] is a socket pair end the agent gets as descriptor 3, not close-on-exec.
  const agent = spawn(GUEST_AGENT_BIN, ["--listen", `unix:${socketPath}`], {
    stdio: ["ignore", "ignore", "pipe", "pipe"],
  });
  const exited = new Promise((resolve) => agent.once("exit", resolve));
  cleanups.push(async () => {
    if (agent.exitCode === null && agent.signalCode === null) agent.kill("SIGTERM");
    await exited;
  });
  let log = "";
  await new Promise<void>((resolve, reject) => {
    agent.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      log += chunk;
      if (log.includes("serving on")) resolve();
    });
    agent.once("exit", () => reject(new Error(`the agent exited: ${log}`)));
  });
  const inherited = readlinkSync(`/proc/${agent.pid}/fd/3`);
  expect(inherited).toMatch(/^socket:/);

  const client = new GuestServiceClient(`unix:${socketPath}`, grpc.credentials.createInsecure());
  cleanups.push(() => client.close());
  const listFds = 'for f in /proc/$$/fd/*; do readlink "$f" || true; done';
  for (const tty of [false, true, false]) {
    for (const user of ["", "nobody"]) {
      const result = await runExec(client, { command: ["sh", "-c", listFds], tty, user, cwd: "/" });
      expect(result.exitCode).toBe(0);
      const targets = text(result.stdout).split(/\r?\n/).filter(Boolean);
      expect(targets.length).toBeGreaterThanOrEqual(3);
      expect(targets).not.toContain(inherited);
    }
  }
});
