// How Exec calls end: timeouts, background processes holding the output, clients that
// cancel, disconnect or stop reading, and many calls at once.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ExecRequestSchema } from "@guestkit/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AgentClient,
  collect,
  groupGone,
  groupMembers,
  killGroup,
  runExec,
  startAgentClient,
  startRequest,
  text,
  waitFor,
} from "./exec-client.js";

let env: AgentClient;
const leftovers: number[] = [];

beforeAll(async () => {
  env = await startAgentClient();
});

afterAll(async () => {
  for (const pgid of leftovers) killGroup(pgid);
  await env?.close();
});

describe("timeout", () => {
  it("kills the whole group and reports 124, timed_out", async () => {
    const started = Date.now();
    const result = await runExec(env.client, {
      command: ["sh", "-c", "sleep 100 & sleep 100"],
      timeoutSeconds: 1,
    });
    leftovers.push(result.pid ?? 0);
    expect(result.exitCode).toBe(124);
    expect(result.exit).toMatchObject({ code: 124, timedOut: true, signal: "SIGTERM" });
    expect(Date.now() - started).toBeLessThan(5000);
    await waitFor(() => groupGone(result.pid ?? 0, env.agent.pid), 3000, "the group to be gone");
  });

  it("uses SIGKILL after the grace when the group ignores SIGTERM", async () => {
    const started = Date.now();
    const result = await runExec(env.client, {
      command: ["sh", "-c", "trap '' TERM; sleep 100 & sleep 100"],
      timeoutSeconds: 1,
    });
    leftovers.push(result.pid ?? 0);
    expect(result.exit).toMatchObject({ code: 124, timedOut: true, signal: "SIGKILL" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2500);
    expect(Date.now() - started).toBeLessThan(8000);
    await waitFor(() => groupGone(result.pid ?? 0, env.agent.pid), 3000, "the group to be gone");
  });

  it("fires even while the command waits for stdin that never comes", async () => {
    const result = await runExec(env.client, { command: ["cat"], timeoutSeconds: 1 }, { halfClose: false });
    expect(result.exit?.timedOut).toBe(true);
    expect(result.exitCode).toBe(124);
  });
});

describe("background processes", () => {
  it("does not let a grandchild holding the pipe keep the call open", async () => {
    const started = Date.now();
    const result = await runExec(env.client, { command: ["sh", "-c", "sleep 30 & echo hi"] });
    leftovers.push(result.pid ?? 0);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(text(result.stdout)).toBe("hi\n");
    expect(result.exit).toMatchObject({ code: 0, outputTruncated: true });
    expect(result.kinds.at(-1)).toBe("exitCode");
    // The background process is left running: ending it is not the agent's call.
    expect(groupMembers(result.pid ?? 0).some((p) => p.state !== "Z")).toBe(true);
    killGroup(result.pid);
  });

  it("still forwards what the background process writes within the drain time", async () => {
    const result = await runExec(env.client, { command: ["sh", "-c", "(sleep 0.1; echo late) & echo early"] });
    expect(text(result.stdout)).toBe("early\nlate\n");
    expect(result.exit?.outputTruncated).toBe(false);
  });

  it("reports no truncation when nothing held the output", async () => {
    const result = await runExec(env.client, { command: ["echo", "hi"] });
    expect(result.exit?.outputTruncated).toBe(false);
  });
});

describe("cancel and disconnect", () => {
  it("kills the whole group when the client cancels, and leaves no zombie", async () => {
    const call = env.client.exec(new grpc.Metadata());
    let pid = 0;
    const result = collect(call, (response) => {
      if (response.response.case === "started") pid = response.response.value.pid;
    });
    call.write(startRequest({ command: ["sh", "-c", "sleep 100 & sleep 100"] }));
    await waitFor(() => pid > 0 && groupMembers(pid).length >= 3, 5000, "sh and both sleeps");
    leftovers.push(pid);
    const cancelledAt = Date.now();
    call.cancel();
    const done = await result;
    expect(done.status.code).toBe(grpc.status.CANCELLED);
    await waitFor(() => groupGone(pid, env.agent.pid), 3000, "no process of the group, and no zombie of the agent");
    expect(Date.now() - cancelledAt).toBeLessThan(3000);
  });

  it("kills the whole group when the client process dies", async () => {
    // A separate client process, killed hard mid-call: the agent sees the connection drop.
    const script = `
      const grpc = require(${JSON.stringify(createRequire(import.meta.url).resolve("@grpc/grpc-js"))});
      const client = new grpc.Client(${JSON.stringify(`unix:${env.agent.socketPath}`)}, grpc.credentials.createInsecure());
      const call = client.makeBidiStreamRequest("/guest.GuestService/Exec", (b) => b, (b) => b);
      call.on("data", () => process.stdout.write("data\\n"));
      call.on("error", () => {});
      call.write(Buffer.from(${JSON.stringify([...legacyStart(["sh", "-c", "sleep 100 & sleep 100"])])}));
    `;
    const client = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => client.stdout.once("data", () => resolve()));
    const pids = agentChildren();
    expect(pids.length).toBeGreaterThan(0);
    await waitFor(() => pids.every((pid) => groupMembers(pid).length >= 3), 5000, "sh and both sleeps");
    leftovers.push(...pids);
    client.kill("SIGKILL");
    await waitFor(() => pids.every((pid) => groupGone(pid, env.agent.pid)), 4000, "the groups to be gone");
  });
});

describe("agent shutdown", () => {
  it("ends running commands' groups and still sends their exit", async () => {
    const own = await startAgentClient();
    const call = own.client.exec(new grpc.Metadata());
    let pid = 0;
    const result = collect(call, (response) => {
      if (response.response.case === "started") pid = response.response.value.pid;
    });
    call.write(startRequest({ command: ["sh", "-c", "sleep 100 & sleep 100"] }));
    await waitFor(() => pid > 0 && groupMembers(pid).length >= 3, 5000, "sh and both sleeps");
    leftovers.push(pid);
    own.agent.process.kill("SIGTERM");
    const done = await result;
    expect(done.exit).toMatchObject({ code: 143, signal: "SIGTERM" });
    expect(done.kinds.at(-1)).toBe("exitCode");
    expect(await own.agent.stop()).toBe(0);
    await waitFor(() => groupGone(pid, own.agent.pid), 3000, "the group to be gone");
    own.client.close();
  });
});

describe("backpressure", () => {
  it("stops reading a command's output while the client does not read, and loses nothing", async () => {
    const total = 256 * 1024 * 1024;
    const call = env.client.exec(new grpc.Metadata());
    let pid = 0;
    let received = 0;
    const result = collect(call, (response) => {
      if (response.response.case === "started") {
        pid = response.response.value.pid;
        call.pause();
      }
      if (response.response.case === "stdout") received += response.response.value.length;
    });
    call.write(startRequest({ command: ["head", "-c", String(total), "/dev/zero"] }));
    call.end();
    await waitFor(() => pid > 0, 5000, "started");
    const rssBefore = rssOf(env.agent.pid);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    // The command is blocked on a full pipe: still there, most of its output unsent.
    expect(groupMembers(pid).length).toBe(1);
    const rssAfter = rssOf(env.agent.pid);
    expect(rssAfter - rssBefore).toBeLessThan(64 * 1024 * 1024);
    call.resume();
    const done = await result;
    expect(received).toBe(total);
    expect(done.exitCode).toBe(0);
  });

  it("forwards stdin only as fast as the command reads it", async () => {
    // `sleep` never reads stdin: after a pipe's worth, the client's writes must block.
    const call = env.client.exec(new grpc.Metadata());
    let pid = 0;
    const result = collect(call, (response) => {
      if (response.response.case === "started") pid = response.response.value.pid;
    });
    call.write(startRequest({ command: ["sleep", "100"] }));
    await waitFor(() => pid > 0, 5000, "started");
    leftovers.push(pid);
    const rssBefore = rssOf(env.agent.pid);
    const chunk = Buffer.alloc(1024 * 1024, 0x78);
    let accepted = 0;
    const writeUntilBlocked = async () => {
      for (let i = 0; i < 512; i++) {
        if (!call.write(create(ExecRequestSchema, { request: { case: "stdin", value: chunk } }))) {
          const drained = await Promise.race([
            new Promise<boolean>((resolve) => call.once("drain", () => resolve(true))),
            new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000)),
          ]);
          if (!drained) return;
        }
        accepted++;
      }
    };
    await writeUntilBlocked();
    // 512 MiB offered; far less taken, and the agent did not buffer the rest.
    expect(accepted).toBeLessThan(128);
    expect(rssOf(env.agent.pid) - rssBefore).toBeLessThan(96 * 1024 * 1024);
    call.cancel();
    await result;
  });
});

describe("concurrency", () => {
  it("runs hundreds of execs on one connection at once", async () => {
    const count = 200;
    const results = await Promise.all(
      Array.from({ length: count }, (_, i) => runExec(env.client, { command: ["echo", `run-${i}`] })),
    );
    results.forEach((result, i) => {
      expect(result.exitCode).toBe(0);
      expect(text(result.stdout)).toBe(`run-${i}\n`);
    });
  });

  it("does not let one client that stopped reading stall the others", async () => {
    const slow = env.client.exec(new grpc.Metadata());
    let slowPid = 0;
    const slowResult = collect(slow, (response) => {
      if (response.response.case === "started") {
        slowPid = response.response.value.pid;
        slow.pause();
      }
    });
    slow.write(startRequest({ command: ["yes"] }));
    await waitFor(() => slowPid > 0, 5000, "the slow exec to start");
    leftovers.push(slowPid);
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => runExec(env.client, { command: ["echo", `other-${i}`] })),
    );
    expect(results.every((r, i) => text(r.stdout) === `other-${i}\n`)).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000);
    slow.cancel();
    await slowResult;
    await waitFor(() => groupGone(slowPid, env.agent.pid), 4000, "yes to be killed");
  });
});

function rssOf(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? 0) * 1024;
}

// Pids of the agent's direct children (the commands it runs), from /proc.
function agentChildren(): number[] {
  const children = readFileSync(`/proc/${env.agent.pid}/task/${env.agent.pid}/children`, "utf8").trim();
  return children ? children.split(" ").map(Number) : [];
}

// ExecRequest{start{command}} in the original wire encoding (field 1 of each).
function legacyStart(command: string[]): Buffer {
  const field = (bytes: Buffer) => Buffer.concat([Buffer.from([0x0a]), varint(bytes.length), bytes]);
  return field(Buffer.concat(command.map((arg) => field(Buffer.from(arg)))));
}

function varint(value: number): Buffer {
  const out: number[] = [];
  let rest = value;
  while (rest > 0x7f) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
  return Buffer.from(out);
}
