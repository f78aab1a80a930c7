// Bulk data: one big file to and from the guest, and a command's stdout streamed out,
// each beside the raw socket pipe and OpenSSH.
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { GuestClient } from "@guestkit/host";
import { GUESTCTL_BIN, sampleRss } from "@guestkit/testkit";
import type { OpenSsh } from "./openssh.js";
import type { RawPipe } from "./raw-pipe.js";
import { type Measurement, measured, mibPerSecond, quantile, since, skipped } from "./stats.js";
import type { Workspace } from "./workspace.js";

/** What the transfer sections need. */
export interface TransferSetup {
  client: GuestClient;
  /** The agent's target string, for guestctl. */
  target: string;
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
  const rawPid = raw.process.pid as number;
  const rows: Measurement[] = [];

  rows.push(
    ...(await sideBySide(to, bytes, setup.reps, [
      {
        name: "guestkit copyTo",
        farPid: setup.agentPid,
        farName: "agent",
        output: guestTarget,
        run: () => client.copyTo(source, guestTarget),
      },
      {
        name: RAW_LABEL,
        farPid: rawPid,
        farName: "peer",
        output: guestTarget,
        run: () => raw.send(source, guestTarget),
      },
    ])),
  );
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
  rows.push(await hostRss(to, setup, ["cp", source, `guest:${guestTarget}`], guestTarget));

  rows.push(
    ...(await sideBySide(from, bytes, setup.reps, [
      {
        name: "guestkit copyFrom",
        farPid: setup.agentPid,
        farName: "agent",
        output: hostTarget,
        run: () => client.copyFrom(guestSource, hostTarget),
      },
      {
        name: RAW_LABEL,
        farPid: rawPid,
        farName: "peer",
        output: hostTarget,
        run: () => raw.receive(guestSource, hostTarget),
      },
    ])),
  );
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
  rows.push(await hostRss(from, setup, ["cp", `guest:${guestSource}`, hostTarget], hostTarget));
  return rows;
}

// The host side's memory while it moves the file: `guestctl cp` in a process of its own
// (this benchmark process holds everything else), its VmRSS sampled every 5 ms.
async function hostRss(section: string, setup: TransferSetup, args: string[], output: string): Promise<Measurement> {
  const peaks: number[] = [];
  for (let rep = 0; rep < Math.min(setup.reps, 2); rep++) {
    const child = spawn(GUESTCTL_BIN, ["--target", setup.target, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      err += text;
    });
    // The launcher execs Node in place, so the pid is guestctl's own.
    const sampler = sampleRss(child.pid as number, 5);
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    peaks.push(sampler.stop().peakBytes / 2 ** 20);
    if (code !== 0) throw new Error(`guestctl ${args.join(" ")}: exit ${code}: ${err.trim()}`);
    await checkAndRemove(output, setup.bytes);
  }
  return measured(section, "guestctl cp: host RSS peak", "MiB", peaks, {
    note: "VmRSS of the guestctl process, sampled every 5 ms",
  });
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
  const rawStream = async () => {
    const received = await raw.stream(argv);
    if (received !== bytes) throw new Error(`raw head: ${received} bytes`);
  };
  rows.push(
    ...(await sideBySide(section, bytes, setup.reps, [
      { name: "guestkit exec", farPid: setup.agentPid, farName: "agent", run: ours },
      { name: RAW_LABEL, farPid: raw.process.pid as number, farName: "peer", run: rawStream },
    ])),
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

const RAW_LABEL = "raw Node Unix socket (limit)";

/** One way of moving the bytes, timed beside the others. */
interface Contender {
  readonly name: string;
  /** The process in the guest's place (the agent, the raw peer), for its CPU time. */
  readonly farPid: number;
  readonly farName: string;
  /** A file the run creates: checked for size, then removed (untimed). */
  readonly output?: string;
  run(): Promise<unknown>;
}

/**
 * Runs the contenders in turn, `reps` rounds, so that a change in the machine's load
 * hits all of them alike and their ratio stays meaningful. Each gets a rate row and a
 * CPU row: CPU seconds per GiB on both sides, which a loaded machine distorts far less
 * than wall-clock time.
 */
async function sideBySide(
  section: string,
  bytes: number,
  reps: number,
  contenders: readonly Contender[],
): Promise<Measurement[]> {
  const results = contenders.map(() => ({ rates: [] as number[], cpu: [] as number[], farCpu: [] as number[] }));
  const gib = bytes / 2 ** 30;
  for (let rep = 0; rep < reps; rep++) {
    for (const [index, contender] of contenders.entries()) {
      const result = results[index] as (typeof results)[number];
      const farBefore = processCpuMs(contender.farPid);
      const nearBefore = process.cpuUsage();
      const start = performance.now();
      await contender.run();
      const ms = since(start);
      const near = process.cpuUsage(nearBefore);
      const farMs = processCpuMs(contender.farPid) - farBefore;
      result.rates.push(mibPerSecond(bytes, ms));
      result.cpu.push((farMs + (near.user + near.system) / 1000) / 1000 / gib);
      result.farCpu.push(farMs / 1000 / gib);
      if (contender.output !== undefined) await checkAndRemove(contender.output, bytes);
    }
  }
  return contenders.flatMap((contender, index) => {
    const result = results[index] as (typeof results)[number];
    const total = quantile(result.cpu, 0.5);
    const far = quantile(result.farCpu, 0.5);
    return [
      measured(section, contender.name, "MiB/s", result.rates),
      measured(section, `${contender.name}: CPU per GiB`, "CPU s/GiB", result.cpu, {
        note: `${contender.farName} ${far.toFixed(2)} s + host side ${(total - far).toFixed(2)} s (medians)`,
      }),
    ];
  });
}

/** CPU milliseconds (user + system) a process has used so far. */
export function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  // utime and stime (fields 14 and 15 of proc_pid_stat(5)), in clock ticks of 10 ms.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function checkAndRemove(output: string, bytes: number): Promise<void> {
  const size = statSync(output).size;
  if (size !== bytes) throw new Error(`${output}: ${size} bytes, expected ${bytes}`);
  await rm(output, { force: true });
}

// Runs `fn` `reps` times, one after another; checks and removes `output` after each run.
async function rates(
  reps: number,
  bytes: number,
  output: string | undefined,
  fn: () => Promise<unknown>,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) {
    const start = performance.now();
    await fn();
    samples.push(mibPerSecond(bytes, since(start)));
    if (output !== undefined) await checkAndRemove(output, bytes);
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
