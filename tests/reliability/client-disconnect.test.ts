// A client that vanishes in the middle of a call: the host process is SIGKILLed, so the
// kernel closes its socket and nothing is said first. The agent must end what the call
// started (the command's whole process group, the staged upload, the open source file),
// and the host must not leave a half-written file under the name the user asked for.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGuestClient, type GuestClient } from "@guestkit/host";
import { type AgentProcess, startAgent } from "@guestkit/testkit";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  type AgentLoad,
  agentLoad,
  expectServing,
  expectSettled,
  type HostWorker,
  sessionMembers,
  startHostWorker,
  waitFor,
} from "./support.js";

let agent: AgentProcess;
let client: GuestClient;
let baseline: AgentLoad;
let work: string;
const workers: HostWorker[] = [];

beforeAll(async () => {
  agent = await startAgent();
  client = createGuestClient(`unix:${agent.socketPath}`);
  // Warm up the paths the tests take, so lazily loaded code is not mistaken for a leak.
  await expectServing(client);
  await client.run(["true"], { tty: true });
  baseline = agentLoad(agent);
});

afterAll(async () => {
  await client.close();
  await agent.stop();
});

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-disconnect-"));
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.kill()));
  await rm(work, { recursive: true, force: true });
});

function worker(job: Record<string, unknown>): HostWorker {
  const started = startHostWorker({ target: `unix:${agent.socketPath}`, ...job });
  workers.push(started);
  return started;
}

/** Zombie children of the agent: commands it failed to reap. */
function agentZombies(): number {
  return agentLoad(agent).zombies;
}

describe("a client killed during an exec", () => {
  const cases: Array<[string, { argv: string[]; tty?: boolean }]> = [
    // Background children in the same group, holding the output pipes open.
    ["pipes, with background children", { argv: ["sh", "-c", "sleep 600 & sleep 600 & echo ready; wait"] }],
    ["a TTY, with a background child", { argv: ["sh", "-c", "sleep 600 & echo ready; wait"], tty: true }],
    // A job-control shell puts each job in a group of its own: the session must go too.
    ["an interactive shell with its own job groups", { argv: ["sh", "-ic", "sleep 600 & sleep 600; wait"], tty: true }],
  ];
  for (const [name, job] of cases) {
    it(`${name}: the process group is gone within 2 s, no zombie`, async () => {
      const host = worker({ op: "exec", ...job });
      const pid = (await host.next((event) => event.event === "started")).pid as number;
      await waitFor("the command's children to start", () => sessionMembers(pid).length >= 2);
      await host.kill();
      const took = await waitFor("the command's session to be empty", () => sessionMembers(pid).length === 0, 2000);
      expect(took).toBeLessThan(2000);
      await waitFor("the agent to reap its child", () => agentZombies() === 0, 2000);
      await expectSettled(agent, baseline);
      await expectServing(client);
    });
  }

  it("a command that ignores SIGTERM is killed after the grace period", async () => {
    // The ignored TERM is inherited by sleep, so only the SIGKILL after the agent's
    // 2-second grace ends the group.
    const host = worker({ op: "exec", argv: ["sh", "-c", "trap '' TERM; sleep 600 & sleep 600; wait"] });
    const pid = (await host.next((event) => event.event === "started")).pid as number;
    await waitFor("the command's children to start", () => sessionMembers(pid).length >= 2);
    await host.kill();
    await waitFor("the command's session to be empty", () => sessionMembers(pid).length === 0, 3500);
    await waitFor("the agent to reap its child", () => agentZombies() === 0, 2000);
    await expectSettled(agent, baseline);
  });
});

describe("a client killed during an upload", () => {
  it("leaves no partial file, and the old target is intact", async () => {
    const source = join(work, "big.bin");
    // Sparse: reading it is cheap, and the agent still writes every byte it receives.
    await writeFile(source, "");
    await truncate(source, 1024 * 1024 * 1024);
    const guestDir = join(work, "guest");
    await mkdir(guestDir);
    const target = join(guestDir, "target.bin");
    await writeFile(target, "old contents");

    const host = worker({ op: "upload", from: source, to: target });
    await host.next((event) => event.event === "progress" && (event.bytes as number) >= 32 * 1024 * 1024);
    // The agent is writing the staged copy right now.
    expect((await readdir(guestDir)).some((name) => name.includes(".guestkit-"))).toBe(true);
    await host.kill();

    await waitFor("the staged upload to be removed", async () => (await readdir(guestDir)).length === 1);
    expect(await readdir(guestDir)).toEqual(["target.bin"]);
    expect(await readFile(target, "utf8")).toBe("old contents");
    await expectSettled(agent, baseline);
    await expectServing(client);
  });
});

describe("a client killed during a download", () => {
  it("leaves nothing under the final name; the agent closes the source", async () => {
    const source = join(work, "big.bin");
    await writeFile(source, "");
    await truncate(source, 1024 * 1024 * 1024);
    const local = join(work, "local");
    await mkdir(local);

    const host = worker({ op: "download", from: source, to: local });
    await host.next((event) => event.event === "progress" && (event.bytes as number) >= 32 * 1024 * 1024);
    await host.kill();

    // The host died before it could clean up: what it left is only its temp file, which
    // is marked as such, and nothing is at the final name.
    const left = await readdir(local);
    expect(left).not.toContain("big.bin");
    for (const name of left) expect(name).toMatch(/^\.big\.bin\.guestkit-[0-9a-f]+-\d+$/);
    await expectSettled(agent, baseline);
    await expectServing(client);
  });

  it("a download cut by the agent's death removes its partial file and says the transfer failed", async () => {
    // Its own agent: this one is killed.
    const victim = await startAgent();
    const victimClient = createGuestClient(`unix:${victim.socketPath}`);
    try {
      const source = join(work, "big.bin");
      await writeFile(source, "");
      await truncate(source, 1024 * 1024 * 1024);
      const destination = join(work, "copy.bin");
      await writeFile(destination, "old contents");
      let killed = false;
      const error = await victimClient
        .copyFrom(source, destination, {
          onProgress: ({ bytes }) => {
            if (!killed && bytes >= 32 * 1024 * 1024) {
              killed = true;
              victim.process.kill("SIGKILL");
            }
          },
        })
        .then(
          () => undefined,
          (reason: unknown) => reason,
        );
      expect(killed).toBe(true);
      expect(error).toMatchObject({ name: "CopyError", code: 14 });
      expect(await readdir(work)).toEqual(expect.arrayContaining(["big.bin", "copy.bin"]));
      expect((await readdir(work)).filter((name) => name.includes(".guestkit-"))).toEqual([]);
      expect(await readFile(destination, "utf8")).toBe("old contents");
      expect((await stat(destination)).size).toBe(12);
    } finally {
      await victimClient.close();
      await victim.stop();
    }
  });
});
