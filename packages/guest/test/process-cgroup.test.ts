// The agent's cgroups against the real kernel, below the gRPC layer: both ways to kill
// a cgroup (cgroup.kill, and the freeze-then-SIGKILL that kernels before 5.14 need),
// Node's spawn through the trampoline (the path where the posix-spawn addon is missing),
// on pipes and on a terminal, and what happens to the directories.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { posixSpawn } from "@guestkit/posix-spawn";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
// The built modules: the trampoline runs as a file of its own, next to them.
import { type CgroupKillMethod, type CommandCgroups, setUpCommandCgroups } from "../dist/exec/process-cgroup.js";
import { commandTree } from "../dist/exec/process-group.js";
import { launchWithNode } from "../dist/exec/process-launch.js";
import {
  alive,
  cgroupDir,
  type Escapee,
  expectAllGone,
  killEscapees,
  readEscapees,
  writeEscapeScript,
} from "./escape-support.js";
import { waitFor } from "./exec-client.js";

const env = { PATH: "/usr/bin:/bin" };
let dir: string;
let script: string;
let escaped: Escapee[] = [];
let subtrees: CommandCgroups[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "guestkit-cgroup-"));
  script = writeEscapeScript(dir);
});

afterEach(() => {
  // Whatever a failed test left: its processes, then its cgroups.
  killEscapees(escaped);
  escaped = [];
  for (const cgroups of subtrees) cgroups.close();
  subtrees = [];
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function setUp(killMethod?: CgroupKillMethod): CommandCgroups {
  const cgroups = setUpCommandCgroups(killMethod ? { killMethod } : {});
  if (typeof cgroups === "string") throw new Error(`this test needs cgroups: ${cgroups}`);
  subtrees.push(cgroups);
  return cgroups;
}

describe.each(["cgroup.kill", "cgroup.freeze"] as const)("killing with %s", (killMethod) => {
  it("ends the setsid child, the daemon and the command", async () => {
    const cgroups = setUp(killMethod);
    const cgroup = cgroups.create();
    const pids = mkdtempSync(join(dir, "run-"));
    const child = posixSpawn({ file: script, argv: [script, pids], env, cgroup: cgroup.path });
    child.stdin.end();
    const escapees = await readEscapees(pids);
    escaped.push(...escapees);
    expect(cgroup.members()).toEqual(expect.arrayContaining([child.pid, ...escapees.map((e) => e.pid)]));
    await cgroup.kill();
    expect(cgroup.populated()).toBe(false);
    await expectAllGone(escapees, 1000);
    expect((await child.exited).signal).toBe(9);
    cgroup.release();
    expect(existsSync(cgroup.path)).toBe(false);
    cgroups.close();
    expect(existsSync(cgroups.root)).toBe(false);
  });

  it("reaches processes forked while it kills", async () => {
    const cgroups = setUp(killMethod);
    const cgroup = cgroups.create();
    // Forks as fast as it can, each child in a session of its own.
    const child = posixSpawn({
      file: "/bin/sh",
      argv: ["sh", "-c", "i=0; while [ $i -lt 300 ]; do setsid sleep 600 & i=$((i+1)); done; wait"],
      env,
      cgroup: cgroup.path,
    });
    child.stdin.end();
    await waitFor(() => cgroup.members().length > 20, 10_000, "the forks to start");
    await cgroup.kill();
    expect(cgroup.members()).toEqual([]);
    await child.exited;
    cgroup.release();
    cgroups.close();
    expect(existsSync(cgroups.root)).toBe(false);
  });
});

describe("Node's spawn, through the trampoline", () => {
  it("puts the command in its cgroup before it runs, so a kill ends what it started", async () => {
    const cgroups = setUp();
    const cgroup = cgroups.create();
    const pids = mkdtempSync(join(dir, "run-"));
    const launched = await launchWithNode({
      file: "/bin/sh",
      argv: ["sh", "-c", `cat /proc/self/cgroup; exec ${script} ${pids}`],
      env,
      cwd: "/",
      cgroup,
    });
    if (!launched.ok) throw new Error(launched.reason);
    const [stdout] = launched.process.outputs;
    const firstLine = new Promise<string>((resolve) =>
      stdout?.stream.once("data", (chunk: Buffer) => resolve(String(chunk))),
    );
    expect(cgroupDir(await firstLine)).toBe(cgroup.path);
    const escapees = await readEscapees(pids);
    escaped.push(...escapees);
    const tree = launched.process.tree;
    expect(tree.running()).toBe(true);
    await tree.kill();
    expect(escapees.some(alive)).toBe(false);
    await launched.process.exited;
    launched.process.close();
    tree.release();
    cgroups.close();
    expect(existsSync(cgroups.root)).toBe(false);
  });
  it("starts a TTY command on its terminal, as its user and in its cgroup", async () => {
    const cgroups = setUp();
    const cgroup = cgroups.create();
    const launched = await launchWithNode({
      file: "/bin/sh",
      // /dev/tty opens only for a process with a controlling terminal.
      argv: ["sh", "-c", "id -u; id -G; stty size; cat /proc/self/cgroup; echo ctty >/dev/tty"],
      env,
      cwd: "/",
      runAs: { uid: 65534, gid: 65534 },
      terminal: { rows: 30, cols: 100 },
      cgroup,
    });
    if (!launched.ok) throw new Error(launched.reason);
    let output = "";
    launched.process.outputs[0]?.stream.on("data", (chunk: Buffer) => {
      output += String(chunk);
    });
    expect(await launched.process.exited).toEqual({ code: 0, signal: null });
    await waitFor(() => output.includes("ctty\r\n"), 5000, "the command's output");
    expect(output.split("\r\n").slice(0, 3)).toEqual(["65534", "65534", "30 100"]);
    expect(cgroupDir(output.replaceAll("\r", ""))).toBe(cgroup.path);
    launched.process.close();
    launched.process.tree.release();
    cgroups.close();
  });
});

describe("the agent's subtree", () => {
  it("keeps a finished command's cgroup while its daemons run, and removes it once they are gone", async () => {
    const cgroups = setUp();
    const cgroup = cgroups.create();
    const pids = mkdtempSync(join(dir, "run-"));
    const child = posixSpawn({ file: script, argv: [script, pids, "exit"], env, cgroup: cgroup.path });
    child.stdin.end();
    expect((await child.exited).code).toBe(0);
    // The daemons hold the pipes.
    child.stdout.destroy();
    child.stderr.destroy();
    const escapees = await readEscapees(pids);
    escaped.push(...escapees);
    const tree = commandTree(child.pid, cgroup);
    tree.release();
    expect(existsSync(cgroup.path)).toBe(true);
    expect(cgroups.lingering).toBe(1);
    killEscapees(escapees);
    await waitFor(() => !existsSync(cgroup.path), 6000, "the cgroup to be removed");
    expect(cgroups.lingering).toBe(0);
    cgroups.close();
  });

  it("makes a cgroup per command and removes each once empty", async () => {
    const cgroups = setUp();
    const made = Array.from({ length: 50 }, () => cgroups.create());
    expect(new Set(made.map((cgroup) => cgroup.path)).size).toBe(50);
    expect(readdirSync(cgroups.root).filter((name) => name.startsWith("exec-"))).toHaveLength(50);
    for (const cgroup of made) cgroup.release();
    expect(readdirSync(cgroups.root).filter((name) => name.startsWith("exec-"))).toHaveLength(0);
    cgroups.close();
  });

  it("takes over the subtree an agent that is gone left behind, and removes it", async () => {
    // A pid no process has any more.
    const gone = posixSpawn({ file: "/bin/true", argv: ["true"], env });
    await gone.exited;
    const own = setUp();
    const parent = dirname(own.root);
    own.close();
    const stale = join(parent, `guest-agent-${gone.pid}`);
    mkdirSync(join(stale, "exec-1"), { recursive: true });
    setUp();
    expect(existsSync(stale)).toBe(false);
  });

  it("says why when the directory it is given is not a cgroup", () => {
    const notCgroup = mkdtempSync(join(dir, "plain-"));
    expect(setUpCommandCgroups({ parent: notCgroup })).toMatch(/neither cgroup\.kill .* nor cgroup\.freeze/);
    expect(readdirSync(notCgroup)).toEqual([]);
  });
});
