// Processes that leave the command's session (a setsid child, a double-forked daemon)
// must not outlive a timeout, a cancel, a client that dies or the agent's stop, in pipe
// and TTY mode: every command runs in a cgroup of its own. A command that exits by
// itself may leave daemons behind on purpose; the cgroups of finished commands go away.
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ExecRequestSchema, GuestServiceClient } from "@guestkit/protocol";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type AgentProcess, startAgent } from "../../testkit/src/agent-process.js";
import {
  alive,
  cgroupDir,
  cgroupDirOf,
  type Escapee,
  expectAllGone,
  killEscapees,
  readEscapees,
  writeEscapeScript,
} from "./escape-support.js";
import {
  type AgentClient,
  collect,
  groupGone,
  killGroup,
  runExec,
  startAgentClient,
  startRequest,
  waitFor,
} from "./exec-client.js";

let env: AgentClient;
let root: string;
let script: string;
/** Escaped processes of the current test, killed in afterEach whatever happened. */
let escaped: Escapee[] = [];

beforeAll(async () => {
  // World-writable: the command may run as nobody.
  root = mkdtempSync(join(tmpdir(), "guestkit-escape-"));
  chmodSync(root, 0o777);
  script = writeEscapeScript(root);
  env = await startAgentClient();
});

afterEach(() => {
  killEscapees(escaped);
  escaped = [];
});

afterAll(async () => {
  await env?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** A fresh directory for one run's pid files. */
function runDir(): string {
  const dir = mkdtempSync(join(root, "run-"));
  chmodSync(dir, 0o777);
  return dir;
}

/** The escapees of a run, recorded for cleanup, after checking that they did leave the session. */
async function escapeesOf(dir: string, commandPid?: number): Promise<Escapee[]> {
  const found = await readEscapees(dir);
  escaped.push(...found);
  if (commandPid !== undefined) for (const escapee of found) expect(escapee.session).not.toBe(commandPid);
  return found;
}

/** The agent's subtree, as its start-up line names it (written just after it listens). */
async function commandCgroupsRoot(agent: AgentProcess): Promise<string> {
  const pattern = /commands run in cgroups under (\S+) /;
  await waitFor(() => pattern.test(agent.stderr()), 5000, `the cgroup start-up line in: ${agent.stderr()}`);
  return pattern.exec(agent.stderr())?.[1] ?? "";
}

function childCgroups(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name);
}

describe.each([
  { mode: "pipes", tty: false },
  { mode: "a terminal", tty: true },
])("on $mode", ({ tty }) => {
  it("a timeout ends the setsid child and the daemon too", async () => {
    const dir = runDir();
    const call = env.client.exec(new grpc.Metadata());
    let pid = 0;
    const result = collect(call, (response) => {
      if (response.response.case === "started") pid = response.response.value.pid;
    });
    call.write(startRequest({ command: [script, dir], tty, timeoutSeconds: 3 }));
    call.end();
    await waitFor(() => pid > 0, 5000, "started");
    const escapees = await escapeesOf(dir, pid);
    const done = await result;
    expect(done.exit).toMatchObject({ code: 124, timedOut: true });
    await expectAllGone(escapees);
    await waitFor(() => groupGone(pid, env.agent.pid), 3000, "the command's group to be gone");
  });

  it("a cancel ends them", async () => {
    const dir = runDir();
    const call = env.client.exec(new grpc.Metadata());
    let pid = 0;
    const result = collect(call, (response) => {
      if (response.response.case === "started") pid = response.response.value.pid;
    });
    call.write(startRequest({ command: [script, dir], tty }));
    await waitFor(() => pid > 0, 5000, "started");
    const escapees = await escapeesOf(dir, pid);
    call.cancel();
    expect((await result).status.code).toBe(grpc.status.CANCELLED);
    await expectAllGone(escapees);
  });

  it("a client that dies ends them", async () => {
    const dir = runDir();
    const client = spawnClient(env.agent.socketPath, [script, dir], tty);
    try {
      const escapees = await escapeesOf(dir);
      client.kill("SIGKILL");
      await expectAllGone(escapees);
    } finally {
      client.kill("SIGKILL");
    }
  });

  it("the agent's SIGTERM ends them", async () => {
    const own = await startAgentClient();
    try {
      const dir = runDir();
      const call = own.client.exec(new grpc.Metadata());
      let pid = 0;
      const result = collect(call, (response) => {
        if (response.response.case === "started") pid = response.response.value.pid;
      });
      call.write(startRequest({ command: [script, dir], tty }));
      await waitFor(() => pid > 0, 5000, "started");
      const escapees = await escapeesOf(dir, pid);
      own.agent.process.kill("SIGTERM");
      await result;
      expect(await own.agent.stop()).toBe(0);
      await expectAllGone(escapees);
    } finally {
      await own.close();
    }
  });

  it("a command that exits by itself leaves its daemons running", async () => {
    const dir = runDir();
    const result = await runExec(env.client, { command: [script, dir, "exit"], tty });
    expect(result.exitCode).toBe(0);
    const escapees = await escapeesOf(dir, result.pid ?? 0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(escapees.every(alive)).toBe(true);
  });
});

describe("in cgroups", () => {
  it("a timeout ends what a command run as nobody started", async () => {
    const dir = runDir();
    const call = env.client.exec(new grpc.Metadata());
    let pid = 0;
    const result = collect(call, (response) => {
      if (response.response.case === "started") pid = response.response.value.pid;
    });
    call.write(startRequest({ command: [script, dir], user: "nobody", cwd: "/", timeoutSeconds: 3 }));
    call.end();
    await waitFor(() => pid > 0, 5000, "started");
    const escapees = await escapeesOf(dir, pid);
    expect((await result).exit).toMatchObject({ code: 124, timedOut: true });
    await expectAllGone(escapees);
  });

  it("names the mechanism at start-up, and runs each command in a cgroup of its own under the agent's", async () => {
    const subtree = await commandCgroupsRoot(env.agent);
    expect(env.agent.stderr()).toMatch(/commands run in cgroups under \S+ \(killed with cgroup\.kill\)/);
    expect(dirname(subtree)).toBe(cgroupDirOf(env.agent.pid));
    const seen: string[] = [];
    for (const tty of [false, true, false]) {
      const result = await runExec(env.client, { command: ["cat", "/proc/self/cgroup"], tty });
      const dir = cgroupDir(text0(result.stdout));
      expect(dirname(dir)).toBe(subtree);
      seen.push(dir);
    }
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("leaves no cgroup behind after many execs, and removes a finished command's once its daemons are gone", async () => {
    const subtree = await commandCgroupsRoot(env.agent);
    // Found and executable, so it gets a cgroup, but execve fails (ENOENT).
    const badInterpreter = join(root, "bad-interpreter");
    writeFileSync(badInterpreter, "#!/no/such/interpreter\n", { mode: 0o755 });
    for (let round = 0; round < 5; round++) {
      await Promise.all([
        ...Array.from({ length: 60 }, () => runExec(env.client, { command: ["true"] })),
        runExec(env.client, { command: ["sh", "-c", "sleep 100"], timeoutSeconds: 1 }),
        runExec(env.client, { command: ["true"], tty: true }),
        runExec(env.client, { command: ["/nonexistent/command"] }),
        runExec(env.client, { command: [badInterpreter] }),
        runExec(env.client, { command: [badInterpreter], tty: true }),
      ]);
    }
    await waitFor(() => childCgroups(subtree).length === 0, 5000, "no cgroup left under the agent's");

    const dir = runDir();
    const result = await runExec(env.client, { command: [script, dir, "exit"] });
    const escapees = await escapeesOf(dir, result.pid ?? 0);
    expect(childCgroups(subtree)).toHaveLength(1);
    for (const escapee of escapees) process.kill(escapee.pid, "SIGKILL");
    await waitFor(() => childCgroups(subtree).length === 0, 8000, "the finished command's cgroup to go");
    const fds = readdirSync(`/proc/${env.agent.pid}/fd`).length;
    await Promise.all(Array.from({ length: 100 }, () => runExec(env.client, { command: ["true"] })));
    expect(readdirSync(`/proc/${env.agent.pid}/fd`).length).toBeLessThanOrEqual(fds + 2);
  });

  it("removes its cgroups when it stops, and those of an agent that was SIGKILLed when it starts", async () => {
    const own = await startAgentClient();
    let subtree: string;
    try {
      subtree = await commandCgroupsRoot(own.agent);
      await runExec(own.client, { command: ["true"] });
      expect(existsSync(subtree)).toBe(true);
    } finally {
      await own.close();
    }
    expect(existsSync(subtree)).toBe(false);

    const killed = await startAgentClient();
    let left: string;
    try {
      left = await commandCgroupsRoot(killed.agent);
      const call = killed.client.exec(new grpc.Metadata());
      let pid = 0;
      const result = collect(call, (response) => {
        if (response.response.case === "started") pid = response.response.value.pid;
      });
      call.write(startRequest({ command: ["sleep", "0.5"] }));
      await waitFor(() => pid > 0, 5000, "started");
      killed.agent.process.kill("SIGKILL");
      await result;
      expect(childCgroups(left)).toHaveLength(1);
    } finally {
      await killed.close();
    }
    // The next agent takes the subtree over, and removes it once the command is gone.
    const next = await startAgentClient();
    try {
      await commandCgroupsRoot(next.agent);
      await waitFor(() => !existsSync(left), 8000, "the SIGKILLed agent's cgroups to be removed");
    } finally {
      await next.close();
    }
  });
});

describe("without cgroups (--no-cgroups)", () => {
  it("says so at start-up, and a timeout still ends the command's session", async () => {
    const agent = await startAgent({ args: ["--no-cgroups"] });
    const client = new GuestServiceClient(`unix:${agent.socketPath}`, grpc.credentials.createInsecure());
    try {
      await waitFor(() => /commands are not put in cgroups \(--no-cgroups\)/.test(agent.stderr()), 5000, "the line");
      for (const tty of [false, true]) {
        const result = await runExec(client, {
          command: ["sh", "-c", "sleep 100 & sleep 100"],
          tty,
          timeoutSeconds: 1,
        });
        expect(result.exit).toMatchObject({ code: 124, timedOut: true });
        await waitFor(() => groupGone(result.pid ?? 0, agent.pid), 3000, "the group to be gone");
        killGroup(result.pid);
      }
      const where = await runExec(client, { command: ["cat", "/proc/self/cgroup"] });
      expect(cgroupDir(text0(where.stdout))).toBe(cgroupDirOf(agent.pid));
    } finally {
      client.close();
      await agent.stop();
    }
  });
});

function text0(bytes: Buffer): string {
  return bytes.toString("utf8").replace(/\r\n/g, "\n");
}

// A client in a process of its own, which the test SIGKILLs: the agent sees the
// connection drop.
function spawnClient(socketPath: string, command: string[], tty: boolean) {
  const start = toBinary(ExecRequestSchema, startRequest({ command, tty }));
  const source = `
    const grpc = require(${JSON.stringify(createRequire(import.meta.url).resolve("@grpc/grpc-js"))});
    const client = new grpc.Client(${JSON.stringify(`unix:${socketPath}`)}, grpc.credentials.createInsecure());
    const call = client.makeBidiStreamRequest("/guest.GuestService/Exec", (b) => b, (b) => b);
    call.on("data", () => {});
    call.on("error", () => {});
    call.write(Buffer.from(${JSON.stringify(Buffer.from(start).toString("base64"))}, "base64"));
  `;
  return spawn(process.execPath, ["-e", source], { stdio: ["ignore", "ignore", "inherit"] });
}
