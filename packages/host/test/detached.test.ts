// Detached commands: a real agent and real processes. A command started detached outlives
// its starter (closed, or SIGKILLed), is listed, keeps its most recent output for later
// attachers, ends with everything it started when killed, and the agent's memory and list
// stay bounded.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { DETACHED_OUTPUT_BYTES, MAX_DETACHED_COMMANDS } from "@guestkit/protocol";
import { rssBytesOf, startAgent } from "@guestkit/testkit";
import { afterEach, describe, expect, it } from "vitest";
import type { AttachHandle } from "../src/exec/detached.js";
import { createGuestClient } from "../src/guest-client.js";
import { Code, GuestError } from "../src/guest-error.js";
import { runCli, startCli } from "./cli-support.js";
import { processExists, useGuestFixture, waitFor } from "./guest-fixture.js";

const suite = useGuestFixture();
const started: string[] = [];

afterEach(async () => {
  const client = suite.guest.client();
  for (const id of started.splice(0)) await client.killDetached(id).catch(() => {});
});

async function text(handle: AttachHandle): Promise<string> {
  let out = "";
  for await (const { data } of handle) out += Buffer.from(data).toString();
  return out;
}

describe("detached commands", () => {
  it("outlive the client that started them, and later clients see output from before and after they attached", async () => {
    const starter = suite.guest.client();
    const { id, pid } = await starter.startDetached(["sh", "-c", "echo before; read go; echo after $go; sleep 600"], {
      stdin: true,
      name: "outlives",
    });
    started.push(id);
    expect(id).toBe("outlives");
    await starter.close();
    const client = suite.guest.client();
    const listed = (await client.listDetached()).find((command) => command.id === id);
    expect(listed).toMatchObject({ pid, command: "sh", running: true });
    // Two attachers: both get what was kept, then what comes while they are attached.
    const first = client.attach(id, { stdin: true });
    const second = suite.guest.client().attach(id);
    const firstText = text(first);
    const secondText = text(second);
    first.stdin?.write("now\n");
    await waitFor(async () => (await text(client.attach(id, { follow: false }))).includes("after now"));
    await client.killDetached(id);
    expect(await firstText).toBe("before\nafter now\n");
    expect(await secondText).toBe("before\nafter now\n");
    expect(await first.exit).toMatchObject({ code: 143, signal: "SIGTERM" });
    expect(processExists(pid)).toBe(false);
  }, 30_000);

  it("survive a starter that is SIGKILLed", async () => {
    const hostLib = fileURLToPath(new URL("../dist/index.js", import.meta.url));
    const script = `
      import { createGuestClient } from ${JSON.stringify(hostLib)};
      const guest = createGuestClient(${JSON.stringify(suite.guest.target)});
      const { id } = await guest.startDetached(["sleep", "600"], { name: "orphan" });
      process.stdout.write(id + "\\n");
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const id = await new Promise<string>((resolve) =>
      child.stdout.once("data", (data: Buffer) => resolve(data.toString().trim())),
    );
    started.push(id);
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    const listed = (await suite.guest.client().listDetached()).find((command) => command.id === id);
    expect(listed?.running).toBe(true);
  }, 30_000);

  it("kill ends the command and everything it started, setsid children included", async () => {
    const client = suite.guest.client();
    const { id } = await client.startDetached(["sh", "-c", "setsid sleep 600 & echo $!; wait"]);
    started.push(id);
    let childPid = 0;
    await waitFor(async () => {
      childPid = Number((await text(client.attach(id, { follow: false }))).trim());
      return childPid > 0;
    });
    expect(processExists(childPid)).toBe(true);
    await client.killDetached(id);
    // Killed with the command; reaped by whoever inherited it a moment later.
    await waitFor(() => !processExists(childPid));
    const listed = (await client.listDetached()).find((command) => command.id === id);
    expect(listed).toMatchObject({ running: false, exit: { code: 143 } });
  });

  it("a flood of output keeps only the ring, and the agent's memory within its bound", async () => {
    const client = suite.guest.client();
    const pid = suite.guest.agent.pid;
    const before = rssBytesOf(pid);
    const flood = ["sh", "-c", "head -c 300000000 /dev/zero | tr '\\0' x; echo; echo tail-marker"];
    // Nobody attached: the agent reads it all and keeps the last DETACHED_OUTPUT_BYTES.
    const alone = await client.startDetached(flood);
    started.push(alone.id);
    await waitFor(async () => !(await client.listDetached()).find((command) => command.id === alone.id)?.running);
    const logs = client.attach(alone.id, { follow: false });
    const kept = await text(logs);
    expect(kept.length).toBeLessThanOrEqual(DETACHED_OUTPUT_BYTES);
    expect(kept.endsWith("tail-marker\n")).toBe(true);
    expect(logs.outputDropped).toBe(true);
    expect((await client.listDetached()).find((command) => command.id === alone.id)?.outputDropped).toBe(true);
    // A follower that reads everything as it comes.
    const followed = await client.startDetached(flood);
    started.push(followed.id);
    let seen = 0;
    for await (const { data } of client.attach(followed.id)) seen += data.byteLength;
    expect(seen).toBeGreaterThan(DETACHED_OUTPUT_BYTES);
    // 600 MB went through; the agent grew by far less (V8 may keep up to 64 MiB of
    // garbage before it collects, as the other flood tests allow for).
    expect(rssBytesOf(pid) - before).toBeLessThan(96 * 1024 * 1024);
  }, 90_000);

  it("names collide clearly, a timeout still applies, and an exited command can be removed", async () => {
    const client = suite.guest.client();
    const { id } = await client.startDetached(["sleep", "600"], { name: "taken" });
    started.push(id);
    const collision = await client.startDetached(["true"], { name: "taken" }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(collision).toBeInstanceOf(GuestError);
    expect(collision).toMatchObject({ code: Code.ALREADY_EXISTS });
    const timed = await client.startDetached(["sleep", "600"], { timeoutSeconds: 1 });
    started.push(timed.id);
    expect(await client.attach(timed.id).exit).toMatchObject({ code: 124, timedOut: true });
    await expect(client.removeDetached(id)).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
    await client.removeDetached(timed.id);
    expect((await client.listDetached()).some((command) => command.id === timed.id)).toBe(false);
  }, 30_000);

  it("a command that cannot start says so; the list stays bounded", async () => {
    const client = suite.guest.client();
    expect(await client.startDetached(["/nonexistent/tool"])).toMatchObject({
      pid: 0,
      exit: { code: 127, startFailed: true },
    });
    const ids = await Promise.all(
      Array.from({ length: MAX_DETACHED_COMMANDS + 6 }, async () => (await client.startDetached(["true"])).id),
    ).catch((error: unknown) => {
      // All held commands still running: a clear refusal, never an unbounded list.
      expect(error).toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
      return [];
    });
    started.push(...ids);
    expect((await client.listDetached()).length).toBeLessThanOrEqual(MAX_DETACHED_COMMANDS);
  }, 60_000);
});

describe("the agent's stop", () => {
  it("ends detached commands and what they started, like the others", async () => {
    const agent = await startAgent();
    const client = createGuestClient(`unix:${agent.socketPath}`);
    try {
      const { pid } = await client.startDetached(["sh", "-c", "setsid sleep 600 & exec sleep 600"]);
      expect(processExists(pid)).toBe(true);
      await client.close();
      expect(await agent.stop()).toBe(0);
      await waitFor(() => !processExists(pid));
    } finally {
      await client.close();
    }
  }, 30_000);
});

describe("guestctl and detached commands", () => {
  it("exec -d, ps, logs, attach, kill, rm", async () => {
    const target = suite.guest.target;
    const start = await runCli([
      "--target",
      target,
      "exec",
      "-d",
      "--name",
      "cli-job",
      "--",
      "sh",
      "-c",
      "echo hello; sleep 600",
    ]);
    expect(start).toMatchObject({ code: 0, stdout: "cli-job\n" });
    started.push("cli-job");
    const ps = await runCli(["--target", target, "ps", "--json"]);
    expect(JSON.parse(ps.stdout)).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: "cli-job", command: "sh", running: true })]),
    );
    // ps never shows arguments or environment.
    expect(ps.stdout).not.toContain("sleep 600");
    await waitFor(async () => (await runCli(["--target", target, "logs", "cli-job"])).stdout === "hello\n");
    const attached = startCli(["--target", target, "attach", "cli-job"]);
    await attached.waitForOutput("hello\n");
    attached.child.kill("SIGINT");
    expect((await attached.result).code).toBe(0);
    expect((await suite.guest.client().listDetached()).find((c) => c.id === "cli-job")?.running).toBe(true);
    const follower = startCli(["--target", target, "logs", "-f", "cli-job"]);
    await follower.waitForOutput("hello\n");
    expect((await runCli(["--target", target, "kill", "cli-job"])).code).toBe(0);
    expect((await follower.result).code).toBe(143);
    expect((await runCli(["--target", target, "rm", "cli-job"])).code).toBe(0);
    const gone = await runCli(["--target", target, "logs", "cli-job"]);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain("no detached command");
  }, 60_000);
});
