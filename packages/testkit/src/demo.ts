// The README's first command (`npm run demo`): the main job end to end. A real agent
// runs on this machine behind a stand-in for Cloud Hypervisor's hybrid vsock socket,
// and the real guestctl drives it through the real CONNECT/OK handshake: commands and
// their exit statuses, stdin, a tree copied in and out, a stat. It prints what it runs
// and what came back, checks every status it shows, and removes everything it started
// on every way out (a failed step, Ctrl-C).
import { spawn } from "node:child_process";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { type AgentProcess, GUESTCTL_BIN, startAgent } from "./agent-process.js";
import { type HybridVsockEndpoint, startHybridVsockEndpoint } from "./hybrid-vsock-endpoint.js";

// The agent's guest port, as a VM's agent would listen on vsock.
const GUEST_PORT = 2222;

interface Step {
  /** guestctl's arguments, as shown. */
  args: string[];
  /** The status the step must end with. */
  expect: number;
  input?: string;
  note?: string;
}

interface World {
  dir: string;
  agent: AgentProcess;
  endpoint: HybridVsockEndpoint;
}

const out = (text = "") => process.stdout.write(`${text}\n`);

async function main(): Promise<number> {
  const started = Date.now();
  const dir = await mkdtemp(join(tmpdir(), "guestkit-demo-"));
  let world: World | undefined;
  const cleanup = async () => {
    await world?.endpoint.close();
    await world?.agent.stop();
    await rm(dir, { recursive: true, force: true });
  };
  const onSignal = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const agent = await startAgent();
    world = { dir, agent, endpoint: await startHybridVsockEndpoint({ path: join(dir, "vm.vsock") }) };
    world.endpoint.register(GUEST_PORT, agent.socketPath);
    await run(world);
    out();
    out(`demo finished in ${((Date.now() - started) / 1000).toFixed(1)} s; stopping the agent and removing ${dir}`);
    return 0;
  } catch (error) {
    process.stderr.write(`demo failed: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await cleanup();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

async function run({ dir, agent, endpoint }: World): Promise<void> {
  const target = endpoint.target(GUEST_PORT);
  // The agent runs on this machine, so "guest" paths are real paths here; this folder
  // plays the guest's file system for the copy steps.
  const guestDir = join(dir, "guest");
  await mkdir(guestDir);
  await makeTree(join(dir, "tree"));

  out("guestkit demo: guestctl drives a guest agent through a Cloud Hypervisor-style hybrid vsock socket");
  out();
  out(`  agent   guest-agent (pid ${agent.pid}), listening where the VM's vsock port ${GUEST_PORT} would be`);
  out(
    `  vmm     ${endpoint.path}: a client writes "CONNECT ${GUEST_PORT}\\n", gets "OK <port>\\n", then talks to the agent`,
  );
  out(`  guest   the agent runs on this machine: its files for this demo are under ${guestDir}`);
  out();
  out(`$ export GUESTCTL_TARGET=${target}`);
  out(`$ cd ${dir}`);

  const steps: Step[] = [
    {
      args: ["exec", "--", "sh", "-c", 'echo "hello from $(uname -s)"; echo "this goes to stderr" >&2; exit 3'],
      expect: 3,
      note: "stdout and stderr each to its own; the command's status is guestctl's",
    },
    { args: ["exec", "--", "no-such-command"], expect: 127, note: "could not start: 127" },
    { args: ["exec", "--timeout", "1", "--", "sleep", "30"], expect: 124, note: "killed by --timeout: 124" },
    { args: ["exec", "-i", "--", "tr", "a-z", "A-Z"], input: "stdin streams in, EOF included\n", expect: 0 },
    { args: ["cp", "tree", `guest:${guestDir}/`], expect: 0, note: "a tree into the guest: modes, times, symlinks" },
    {
      args: [
        "exec",
        "-w",
        guestDir,
        "--",
        "sh",
        "-c",
        "find tree | sort | xargs ls -ldn --time-style=+%F; tree/bin/hello",
      ],
      expect: 0,
    },
    { args: ["cp", `guest:${guestDir}/tree`, "back"], expect: 0, note: "and back out" },
    { args: ["stat", `guest:${guestDir}/tree/bin/hello`], expect: 0 },
  ];
  for (const step of steps) await runStep(step, dir, target);

  const copied = await describeTree(join(dir, "back"));
  const original = await describeTree(join(dir, "tree"));
  out();
  out("the tree that came back:");
  for (const line of copied) out(`    ${line}`);
  if (copied.join("\n") !== original.join("\n")) throw new Error("the tree that came back differs from the original");
  out("  identical to the original (contents, modes, times, symlinks)");
  const { lines, joined } = endpoint.stats();
  const connects = new Set(lines);
  out();
  out(
    `the hybrid vsock socket saw ${joined} connections, each opened with ${[...connects].map((line) => JSON.stringify(`${line}\n`)).join(", ")} and answered OK`,
  );
}

async function runStep(step: Step, cwd: string, target: string): Promise<void> {
  out();
  if (step.note) out(`# ${step.note}`);
  const shown = step.args.map(shellWord).join(" ");
  out(
    step.input === undefined ? `$ guestctl ${shown}` : `$ echo ${shellWord(step.input.trimEnd())} | guestctl ${shown}`,
  );
  const result = await guestctl(step.args, cwd, target, step.input);
  for (const line of lines(result.stdout)) out(`  ${line}`);
  for (const line of lines(result.stderr)) out(`  [stderr] ${line}`);
  out(`  -> exit ${result.code}`);
  if (result.code !== step.expect) {
    throw new Error(`guestctl ${shown} exited ${result.code}, expected ${step.expect}`);
  }
}

function guestctl(
  args: string[],
  cwd: string,
  target: string,
  input: string | undefined,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(GUESTCTL_BIN, args, {
      cwd,
      env: { ...process.env, GUESTCTL_TARGET: target },
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (text: string) => {
      stdout += text;
    });
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      stderr += text;
    });
    if (input !== undefined) child.stdin?.end(input);
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, "bin"), { recursive: true });
  await mkdir(join(root, "private"));
  await writeFile(join(root, "README"), "a small tree, copied into the guest and back\n");
  await writeFile(join(root, "bin", "hello"), '#!/bin/sh\necho "tree/bin/hello ran: its mode came along"\n');
  await chmod(join(root, "bin", "hello"), 0o755);
  await writeFile(join(root, "private", "key"), "not for everyone\n");
  await chmod(join(root, "private", "key"), 0o600);
  await chmod(join(root, "private"), 0o700);
  await symlink("bin/hello", join(root, "hello-link"));
  // A date that is not today, so that the listings show the times came along too.
  const when = new Date("2024-05-01T12:00:00Z");
  for (const path of ["README", "bin/hello", "private/key", "bin", "private", "."]) {
    await utimes(join(root, path), when, when);
  }
}

// One line per entry: mode, path, and what a link points to or a file's size.
async function describeTree(root: string): Promise<string[]> {
  const entries: string[] = [];
  const visit = async (path: string) => {
    const info = await lstat(path);
    const name = relative(root, path) || ".";
    const mode = (info.mode & 0o7777).toString(8).padStart(4, "0");
    if (info.isSymbolicLink()) entries.push(`link ${name} -> ${await readlink(path)}`);
    else if (info.isDirectory()) {
      entries.push(`dir  ${mode} ${day(info.mtime)} ${name}/`);
      for (const child of (await readdir(path)).sort()) await visit(join(path, child));
    } else entries.push(`file ${mode} ${day(info.mtime)} ${name} (${(await readFile(path)).length} bytes)`);
  };
  await visit(root);
  return entries;
}

function day(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function lines(text: string): string[] {
  return text === "" ? [] : text.replace(/\n$/, "").split("\n");
}

// Shown the way one would type it: quoted only when it needs to be.
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

process.exitCode = await main();
