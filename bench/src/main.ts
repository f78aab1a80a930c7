// `pnpm bench`: guestkit beside the local floor, a raw Unix socket and OpenSSH, all in
// one run, printed as a table and written to bench-results/*.json.
import { cp, mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createGuestClient, type GuestClient } from "@guestkit/host";
import { type AgentProcess, type HybridVsockEndpoint, startAgent, startHybridVsockEndpoint } from "@guestkit/testkit";
import { measureStartup, memoryOf } from "./agent-footprint.js";
import { measureConcurrentExecs } from "./concurrency.js";
import { measureExecLatency } from "./exec-latency.js";
import { type OpenSsh, startOpenSsh } from "./openssh.js";
import { measurePortForward } from "./port-forward.js";
import { type RawPipe, startRawPipe } from "./raw-pipe.js";
import { checkTargets, describeMachine, formatTable } from "./report.js";
import { type Measurement, measured, skipped } from "./stats.js";
import { measureFileCopy, measureStdoutStreaming, type TransferSetup } from "./transfer.js";
import { measureTree } from "./tree.js";
import { createWorkspace, type Workspace, writeDataFile, writeTree } from "./workspace.js";

const SECTIONS = ["agent", "exec", "concurrent", "stream", "copy", "tree", "forward"] as const;

const USAGE = `usage: pnpm bench [-- OPTIONS]

  --quick       256 MiB transfers, 2,000 files, fewer repetitions (about a minute)
  --size-mib N  size of the big file and of the streamed output (default 1024)
  --files N     files in the tree (default 10000)
  --reps N      repetitions of each guestkit and raw transfer (default 3)
  --only LIST   run only these sections, comma-separated: ${SECTIONS.join(",")}
`;

const RESULTS_DIR = fileURLToPath(new URL("../../bench-results/", import.meta.url));

async function main(): Promise<void> {
  // `pnpm bench -- --quick` passes the "--" along.
  const args = process.argv.slice(2);
  if (args[0] === "--") args.shift();
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean" },
      "size-mib": { type: "string" },
      files: { type: "string" },
      reps: { type: "string" },
      only: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const quick = values.quick === true;
  const bytes = Number(values["size-mib"] ?? (quick ? 256 : 1024)) * 1024 * 1024;
  const files = Number(values.files ?? (quick ? 2000 : 10_000));
  const reps = Number(values.reps ?? 3);
  const only = new Set(values.only?.split(",").map((name) => name.trim()) ?? SECTIONS);
  const unknown = [...only].filter((name) => !(SECTIONS as readonly string[]).includes(name));
  if (!(bytes > 0 && files > 0 && reps > 0) || unknown.length > 0) {
    process.stderr.write(`bench: bad arguments\n${USAGE}`);
    process.exit(2);
  }
  const wanted = (name: (typeof SECTIONS)[number]) => only.has(name);
  const loadBefore = loadavg();

  const cleanups: Array<() => Promise<unknown>> = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
    cleanups.length = 0;
  };
  const interrupted = () => {
    process.stderr.write("\nbench: interrupted, cleaning up\n");
    void cleanup().then(() => process.exit(130));
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);

  const rows: Measurement[] = [];
  const step = (text: string) => process.stderr.write(`bench: ${text}\n`);
  // A section that fails becomes a row saying why; the others still run.
  const section = async (name: string, unit: Measurement["unit"], run: () => Promise<Measurement[]>) => {
    step(name);
    try {
      rows.push(...(await run()));
    } catch (error) {
      const message = (error as Error).message.split("\n")[0] ?? "";
      step(`${name} failed: ${message}`);
      rows.push(skipped(name, "failed", unit, message));
    }
  };
  try {
    const workspace: Workspace = await createWorkspace();
    cleanups.push(() => workspace.remove());
    step(`workspace ${workspace.root}`);

    if (wanted("agent")) {
      await section("agent start-up and idle memory", "ms", () => measureStartup(workspace.misc, quick ? 3 : 7));
    }

    const agent: AgentProcess = await startAgent();
    cleanups.push(() => agent.stop());
    const endpoint: HybridVsockEndpoint = await startHybridVsockEndpoint();
    cleanups.push(() => endpoint.close());
    endpoint.register(2222, agent.socketPath);
    const raw: RawPipe = await startRawPipe(workspace.misc);
    cleanups.push(() => raw.stop());
    const ssh: OpenSsh | Error = await startOpenSsh(workspace.misc).catch((error: unknown) => error as Error);
    if (ssh instanceof Error) step(`OpenSSH reference cannot run: ${ssh.message}`);
    else cleanups.push(() => ssh.stop());
    const client: GuestClient = createGuestClient(`unix:${agent.socketPath}`);
    cleanups.push(() => client.close());

    if (wanted("exec")) {
      await section("exec latency", "ms", () =>
        measureExecLatency(client, endpoint, ssh, {
          local: quick ? 100 : 300,
          open: quick ? 100 : 300,
          fresh: quick ? 20 : 60,
          sshMultiplexed: quick ? 10 : 30,
          sshDirect: quick ? 5 : 15,
          cli: quick ? 10 : 30,
        }),
      );
    }
    if (wanted("concurrent")) {
      await section("256 concurrent execs", "ms", () => measureConcurrentExecs(client, agent.pid, 256, quick ? 2 : 5));
    }

    const source = join(workspace.host, "source.bin");
    const guestSource = join(workspace.guest, "source.bin");
    if (wanted("copy")) {
      step(`test data: a ${bytes / 2 ** 20} MiB file`);
      await writeDataFile(source, bytes);
      await cp(source, guestSource);
    }
    const hostTree = join(workspace.host, "tree-src", "tree");
    const guestTree = join(workspace.guest, "tree");
    if (wanted("tree")) {
      step(`test data: ${files} files`);
      await writeTree(hostTree, files, 1024);
      await cp(hostTree, guestTree, { recursive: true });
    }

    const transfer: TransferSetup = {
      client,
      target: `unix:${agent.socketPath}`,
      agentPid: agent.pid,
      raw,
      ssh,
      workspace,
      source,
      guestSource,
      bytes,
      reps,
      sshReps: quick ? 1 : 2,
    };
    if (wanted("stream")) await section("stdout streaming", "MiB/s", () => measureStdoutStreaming(transfer));
    if (wanted("copy")) await section("file copy", "MiB/s", () => measureFileCopy(transfer));
    if (wanted("tree")) {
      await section("tree copy", "s", () =>
        measureTree({ client, ssh, workspace, hostTree, guestTree, files, reps: quick ? 2 : 3 }),
      );
    }

    if (wanted("forward")) {
      await section("port forward", "MiB/s", () => measurePortForward(client, Math.min(bytes, 256 * 2 ** 20), reps));
    }

    const memory = memoryOf(agent.pid);
    rows.push(
      measured("agent", "RSS peak over the whole run (VmHWM)", "MiB", [memory.hwm], {
        note: "the agent that served every section above",
      }),
    );
  } finally {
    await cleanup();
  }

  const machine = describeMachine(loadBefore);
  const checks = checkTargets(rows);
  process.stdout.write(`${formatTable(rows, checks, machine)}\n`);
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `bench-${machine.date.replaceAll(":", "-")}.json`);
  await writeFile(file, `${JSON.stringify({ machine, rows, targets: checks }, null, 2)}\n`);
  process.stdout.write(`\nwritten to ${file}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    const usage = (error as { code?: unknown }).code?.toString().startsWith("ERR_PARSE_ARGS");
    process.stderr.write(usage ? `bench: ${(error as Error).message}\n${USAGE}` : `bench: ${(error as Error).stack}\n`);
    process.exit(usage ? 2 : 1);
  },
);
