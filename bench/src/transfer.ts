// Bulk data: one big file to and from the guest, and a command's stdout streamed out,
// each beside the raw socket pipe and OpenSSH.
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { GuestClient } from "@guestkit/host";
import type { OpenSsh } from "./openssh.js";
import type { RawPipe } from "./raw-pipe.js";
import { type Measurement, measured, mibPerSecond, quantile, since, skipped } from "./stats.js";
import type { Workspace } from "./workspace.js";

/** What the transfer sections need. */
export interface TransferSetup {
  client: GuestClient;
  /** The agent's pid, for its CPU time. */
  agentPid: number;
  raw: RawPipe;
  ssh: OpenSsh | Error;
  workspace: Workspace;
  /** The local source file, `bytes` long. */
  source: string;
  /** The same bytes already in the guest. */
  guestSource: string;
  bytes: number;
  reps: number;
  /** Repetitions for OpenSSH, which takes several seconds per GiB. */
  sshReps: number;
}

/** 1 GiB (or `bytes`) to the guest and back, MiB/s. */
export async function measureFileCopy(setup: TransferSetup): Promise<Measurement[]> {
  const { client, raw, ssh, workspace, source, guestSource, bytes } = setup;
  const size = label(bytes);
  const to = `${size} file to guest`;
  const from = `${size} file from guest`;
  const guestTarget = join(workspace.guest, "upload.bin");
  const hostTarget = join(workspace.host, "download.bin");
  const rows: Measurement[] = [];
  const ours = (section: string, name: string, output: string, fn: () => Promise<unknown>) =>
    withCpuRows(section, name, setup.agentPid, "agent", () => rates(setup.reps, bytes, output, fn));
  const limit = (section: string, output: string, fn: () => Promise<unknown>) =>
    withCpuRows(section, "raw Node Unix socket (limit)", raw.process.pid as number, "peer", () =>
      rates(setup.reps, bytes, output, fn),
    );

  rows.push(...(await ours(to, "guestkit copyTo", guestTarget, () => client.copyTo(source, guestTarget))));
  rows.push(...(await limit(to, guestTarget, () => raw.send(source, guestTarget))));
  rows.push(
    ssh instanceof Error
      ? skipped(to, "ssh host 'cat > /dev/null'", "MiB/s", ssh.message)
      : measured(
          to,
          "ssh host 'cat > /dev/null'",
          "MiB/s",
          await rates(setup.sshReps, bytes, undefined, () =>
            spawnFiles("ssh", [...ssh.multiplexed, "cat > /dev/null"], source),
          ),
          { note: "ControlMaster connection; writes to /dev/null, not to a file" },
        ),
  );

  rows.push(...(await ours(from, "guestkit copyFrom", hostTarget, () => client.copyFrom(guestSource, hostTarget))));
  rows.push(...(await limit(from, hostTarget, () => raw.receive(guestSource, hostTarget))));
  rows.push(
    ssh instanceof Error
      ? skipped(from, "ssh host cat FILE > file", "MiB/s", ssh.message)
      : measured(
          from,
          "ssh host cat FILE > file",
          "MiB/s",
          await rates(setup.sshReps, bytes, hostTarget, () =>
            spawnFiles("ssh", [...ssh.multiplexed, `cat ${guestSource}`], undefined, hostTarget),
          ),
          { note: "ControlMaster connection" },
        ),
  );
  return rows;
}

/** `head -c BYTES /dev/zero` through exec, beside the raw pipe and ssh. */
export async function measureStdoutStreaming(setup: TransferSetup): Promise<Measurement[]> {
  const { client, raw, ssh, bytes } = setup;
  const section = `stdout streaming, ${label(bytes)}`;
  const argv = ["head", "-c", String(bytes), "/dev/zero"];
  const rows: Measurement[] = [];
  const ours = async () => {
    const handle = client.exec(argv);
    let received = 0;
    for await (const output of handle) received += output.data.byteLength;
    const exit = await handle.exit;
    if (exit.code !== 0 || received !== bytes) throw new Error(`exec head: exit ${exit.code}, ${received} bytes`);
  };
  rows.push(
    ...(await withCpuRows(section, "guestkit exec", setup.agentPid, "agent", () =>
      rates(setup.reps, bytes, undefined, ours),
    )),
  );
  const rawStream = async () => {
    const received = await raw.stream(argv);
    if (received !== bytes) throw new Error(`raw head: ${received} bytes`);
  };
  rows.push(
    ...(await withCpuRows(section, "raw Node Unix socket (limit)", raw.process.pid as number, "peer", () =>
      rates(setup.reps, bytes, undefined, rawStream),
    )),
  );
  rows.push(
    ssh instanceof Error
      ? skipped(section, "ssh host head -c N /dev/zero", "MiB/s", ssh.message)
      : measured(
          section,
          "ssh host head -c N /dev/zero",
          "MiB/s",
          await rates(setup.sshReps, bytes, undefined, () => spawnFiles("ssh", [...ssh.multiplexed, argv.join(" ")])),
          { note: "ControlMaster connection" },
        ),
  );
  return rows;
}

// CPU time is what a loaded machine distorts least: wall-clock rates depend on who else
// runs, CPU seconds per GiB mostly do not. `rates` reports into the tracker while one is set.
let cpuTracker: { farPid: number; perGiB: number[]; farPerGiB: number[] } | undefined;

// A rate row and, beside it, what the runs cost in CPU: the far process (the agent or
// the raw peer, in the guest's place) plus this process (the host side).
async function withCpuRows(
  section: string,
  name: string,
  farPid: number,
  farName: string,
  run: () => Promise<number[]>,
): Promise<Measurement[]> {
  const tracker = { farPid, perGiB: [] as number[], farPerGiB: [] as number[] };
  cpuTracker = tracker;
  let result: number[];
  try {
    result = await run();
  } finally {
    cpuTracker = undefined;
  }
  const total = quantile(tracker.perGiB, 0.5);
  const far = quantile(tracker.farPerGiB, 0.5);
  return [
    measured(section, name, "MiB/s", result),
    measured(section, `${name}: CPU per GiB`, "CPU s/GiB", tracker.perGiB, {
      note: `${farName} ${far.toFixed(2)} s + host side ${(total - far).toFixed(2)} s (medians)`,
    }),
  ];
}

/** CPU milliseconds (user + system) a process has used so far. */
export function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  // utime and stime (fields 14 and 15 of proc_pid_stat(5)), in clock ticks of 10 ms.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

// Runs `fn` `reps` times; checks and removes `output` after each run (untimed).
async function rates(
  reps: number,
  bytes: number,
  output: string | undefined,
  fn: () => Promise<unknown>,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) {
    const tracker = cpuTracker;
    const farBefore = tracker ? processCpuMs(tracker.farPid) : 0;
    const nearBefore = process.cpuUsage();
    const start = performance.now();
    await fn();
    const ms = since(start);
    if (tracker) {
      const near = process.cpuUsage(nearBefore);
      const farMs = processCpuMs(tracker.farPid) - farBefore;
      const gib = bytes / 2 ** 30;
      tracker.perGiB.push((farMs + (near.user + near.system) / 1000) / 1000 / gib);
      tracker.farPerGiB.push(farMs / 1000 / gib);
    }
    if (output !== undefined) {
      const size = statSync(output).size;
      if (size !== bytes) throw new Error(`${output}: ${size} bytes, expected ${bytes}`);
      await rm(output, { force: true });
    }
    samples.push(mibPerSecond(bytes, ms));
  }
  return samples;
}

// A command with stdin from a file and stdout to a file (or /dev/null), like a shell redirect.
function spawnFiles(command: string, args: string[], stdinPath?: string, stdoutPath?: string): Promise<void> {
  const stdin = stdinPath === undefined ? "ignore" : openSync(stdinPath, "r");
  const stdout = stdoutPath === undefined ? "ignore" : openSync(stdoutPath, "w");
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { stdio: [stdin, stdout, "pipe"] });
    let err = "";
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      err += text;
    });
    child.once("error", reject);
    child.once("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command}: exit ${code}: ${err.trim()}`)),
    );
  }).finally(() => {
    if (typeof stdin === "number") closeSync(stdin);
    if (typeof stdout === "number") closeSync(stdout);
  });
}

/** "1 GiB", "256 MiB". */
export function label(bytes: number): string {
  return bytes >= 1 << 30 && bytes % (1 << 30) === 0
    ? `${bytes / (1 << 30)} GiB`
    : `${Math.round(bytes / (1 << 20))} MiB`;
}
