// The soak: a real agent under a long mixed load through the real host library, then a
// settle period, then the proof that it is back where it started. Hundreds of workers
// run execs (pipes and TTYs, with stdin, killed, cancelled, timed out) and copies (round
// trips checked byte for byte, trees, uploads cancelled half-way) and stats, over a few
// shared connections and a stream of short-lived ones. Before and after, the agent's
// RSS, open fds and child processes are read from /proc, and its JS heap through the
// inspector: fds and processes must come back exactly, heap and RSS within a tolerance.
//
// Both snapshots are taken with no connection open, after a full garbage collection,
// and "before" only after a warm-up under the same load: malloc and V8 keep memory they
// freed for reuse, so RSS after a first load never returns to an idle agent's level
// (measured: 76 -> 149 MiB after the first 15 s of load, then 151, 151, 151 after three
// more), while the heap after a full GC stays flat unless something leaks.
// `pnpm soak` runs it for minutes (soak-cli.ts); tests/reliability runs a short form.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CopyError, createGuestClient, type GuestClient, GuestError } from "@guestkit/host";
import { type AgentInspector, connectInspector, INSPECTOR_NODE_OPTIONS } from "./agent-inspector.js";
import { type AgentProcess, startAgent } from "./agent-process.js";
import { describeFds, sampleProcess, sampleRss } from "./process-stats.js";

/** Options of runSoak. */
export interface SoakOptions {
  /** How long to load the agent. Default 60 s. */
  durationMs?: number;
  /** Workers, each running one operation after another. Default 200. */
  concurrency?: number;
  /** Stop after this many operations even if time is left. Default: no limit but the time. */
  maxOperations?: number;
  /** How long the agent gets to release fds and processes after the load. Default 15 s. */
  settleMs?: number;
  /** Warm-up under the same load before the first snapshot. Default 10 s, or the duration if shorter. */
  warmupMs?: number;
  /** RSS growth allowed between the start and the end. Default 64 MiB. */
  rssToleranceBytes?: number;
  /** JS heap growth (after a full GC) allowed between the start and the end. Default 8 MiB. */
  heapToleranceBytes?: number;
  /** Progress lines (the CLI prints them; tests may ignore them). */
  log?: (line: string) => void;
}

/** The agent's resources at one moment. */
export interface SoakSnapshot {
  rssBytes: number;
  /** JS heap in use after a full GC. */
  heapUsedBytes: number;
  fds: number;
  /** Child processes (any depth). */
  processes: number;
}

/** The kinds of operation a worker runs. */
export type SoakOperation =
  | "exec-pipes"
  | "exec-stdin"
  | "exec-tty"
  | "exec-kill"
  | "exec-cancel"
  | "exec-timeout"
  | "copy-roundtrip"
  | "copy-tree"
  | "copy-cancel"
  | "stat"
  | "fresh-connection";

/** What a soak did and how the agent came out of it. */
export interface SoakReport {
  durationMs: number;
  concurrency: number;
  /** Operations completed, by kind. */
  operations: Record<SoakOperation, number>;
  /** gRPC calls the agent served (an operation is one to four calls). */
  callsServed: number;
  /** Operations that went wrong (an unexpected error, wrong output, a leftover file). */
  errors: number;
  /** The first few errors, for the report. */
  errorSamples: string[];
  /** The slowest operation of each kind, in ms (a hang shows up here first). */
  slowestMs: Record<SoakOperation, number>;
  /** After warm-up, before the load. */
  before: SoakSnapshot;
  /** After the load and the settle period. */
  after: SoakSnapshot;
  peakRssBytes: number;
  /** How long the agent took to release everything after the load. */
  settleMs: number;
  /** fds and processes back exactly, RSS within tolerance, no errors. */
  passed: boolean;
  /** Why it did not pass, one reason a line. */
  problems: string[];
}

const CALLS_PER_OPERATION: Record<SoakOperation, number> = {
  "exec-pipes": 1,
  "exec-stdin": 1,
  "exec-tty": 1,
  "exec-kill": 1,
  "exec-cancel": 1,
  "exec-timeout": 1,
  // copyTo asks StatPath about the destination first (once or twice), then CopyToGuest;
  // then CopyFromGuest.
  "copy-roundtrip": 3,
  "copy-tree": 3,
  "copy-cancel": 2,
  stat: 1,
  "fresh-connection": 1,
};

// Weights: mostly cheap calls, enough of every kind to exercise its path.
const MIX: ReadonlyArray<[SoakOperation, number]> = [
  ["exec-pipes", 20],
  ["exec-stdin", 12],
  ["exec-tty", 10],
  ["exec-kill", 5],
  ["exec-cancel", 5],
  ["exec-timeout", 1],
  ["copy-roundtrip", 15],
  ["copy-tree", 5],
  ["copy-cancel", 3],
  ["stat", 20],
  ["fresh-connection", 4],
];

const SHARED_CONNECTIONS = 4;
const MAX_ERROR_SAMPLES = 10;
// A load that is failing has shown what it can: workers stop starting operations after
// this many errors, so a broken agent fails the soak in seconds instead of its duration.
const STOP_AFTER_ERRORS = 20;

/** Runs a soak against a fresh agent and reports. Never throws for what the agent does. */
export async function runSoak(options: SoakOptions = {}): Promise<SoakReport> {
  const durationMs = options.durationMs ?? 60_000;
  const concurrency = options.concurrency ?? 200;
  const settleLimitMs = options.settleMs ?? 15_000;
  // RSS is the allocator's, which keeps what a peak freed (a CI run of the short soak:
  // 107.6 -> 155.3 MiB after a 185.8 MiB peak, with the JS heap after GC flat at 12.8 ->
  // 12.3 MiB and fds and processes back exactly): the heap is what tells a leak.
  const rssTolerance = options.rssToleranceBytes ?? 64 * 1024 * 1024;
  const heapTolerance = options.heapToleranceBytes ?? 8 * 1024 * 1024;
  const warmupMs = options.warmupMs ?? Math.min(10_000, durationMs);
  const log = options.log ?? (() => {});
  const work = await mkdtemp(join(tmpdir(), "guestkit-soak-"));
  const agent = await startAgent({
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} ${INSPECTOR_NODE_OPTIONS}`.trim() },
  });
  let inspector: AgentInspector | undefined;
  const context: Context = {
    agent,
    guestDir: join(work, "guest"),
    localDir: join(work, "local"),
    nextId: 0,
  };
  const zeroes = () => Object.fromEntries(MIX.map(([kind]) => [kind, 0])) as Record<SoakOperation, number>;
  const tally: Tally = { operations: zeroes(), slowestMs: zeroes(), errors: 0, errorSamples: [] };
  try {
    inspector = await connectInspector(agent.stderr);
    await mkdir(context.guestDir);
    await mkdir(context.localDir);
    log(`soak: agent pid ${agent.pid}; warming up for ${(warmupMs / 1000).toFixed(0)} s`);
    const warmup: Tally = { operations: zeroes(), slowestMs: zeroes(), errors: 0, errorSamples: [] };
    await runLoad(context, { durationMs: warmupMs, concurrency, maxOperations: Number.POSITIVE_INFINITY }, warmup, log);
    const before = await settledSnapshot(agent, inspector, undefined, settleLimitMs);
    log(`soak: before: ${formatSnapshot(before)}`);
    log(`soak: ${concurrency} workers for ${(durationMs / 1000).toFixed(0)} s`);

    const rss = sampleRss(agent.pid, 200);
    const loadMs = await runLoad(
      context,
      { durationMs, concurrency, maxOperations: options.maxOperations ?? Number.POSITIVE_INFINITY },
      tally,
      log,
    );
    const peakRssBytes = rss.stop().peakBytes;

    const settleStart = Date.now();
    const after = await settledSnapshot(agent, inspector, before, settleLimitMs);
    const settleMs = Date.now() - settleStart;
    // Every upload, finished or cancelled, must have left no staged file behind.
    const leftovers = (await readdir(context.guestDir, { recursive: true })).filter((name) =>
      String(name).includes(".guestkit-"),
    );
    if (leftovers.length > 0) {
      tally.errors += 1;
      tally.errorSamples.push(`temp files left in the guest: ${leftovers.slice(0, 5).join(", ")}`);
    }
    const problems: string[] = [];
    if (warmup.errors > 0)
      problems.push(`${warmup.errors} operations failed during the warm-up: ${warmup.errorSamples.join(" | ")}`);
    if (after.fds !== before.fds) {
      problems.push(`open fds ${before.fds} -> ${after.fds}: ${describeFds(agent.pid).join("; ")}`);
    }
    if (after.processes !== before.processes) problems.push(`processes ${before.processes} -> ${after.processes}`);
    if (after.heapUsedBytes - before.heapUsedBytes > heapTolerance) {
      problems.push(
        `JS heap grew by ${mib(after.heapUsedBytes - before.heapUsedBytes)} MiB (tolerance ${mib(heapTolerance)} MiB)`,
      );
    }
    if (after.rssBytes - before.rssBytes > rssTolerance) {
      problems.push(`RSS grew by ${mib(after.rssBytes - before.rssBytes)} MiB (tolerance ${mib(rssTolerance)} MiB)`);
    }
    if (tally.errors > 0) problems.push(`${tally.errors} operations failed`);
    const callsServed = Object.entries(tally.operations).reduce(
      (sum, [kind, count]) => sum + count * CALLS_PER_OPERATION[kind as SoakOperation],
      0,
    );
    const report: SoakReport = {
      durationMs: loadMs,
      concurrency,
      operations: tally.operations,
      callsServed,
      errors: tally.errors,
      errorSamples: tally.errorSamples,
      slowestMs: tally.slowestMs,
      before,
      after,
      peakRssBytes,
      settleMs,
      passed: problems.length === 0,
      problems,
    };
    log(formatReport(report));
    return report;
  } finally {
    inspector?.close();
    await agent.stop();
    await rm(work, { recursive: true, force: true });
  }
}

interface Tally {
  operations: Record<SoakOperation, number>;
  slowestMs: Record<SoakOperation, number>;
  errors: number;
  errorSamples: string[];
}

/**
 * Runs the mix with `concurrency` workers over SHARED_CONNECTIONS clients made for this
 * load and closed at its end. Resolves with how long it ran.
 */
async function runLoad(
  context: Context,
  limits: { durationMs: number; concurrency: number; maxOperations: number },
  tally: Tally,
  log: (line: string) => void,
): Promise<number> {
  const clients = Array.from({ length: SHARED_CONNECTIONS }, () =>
    createGuestClient(`unix:${context.agent.socketPath}`),
  );
  const started = Date.now();
  const deadline = started + limits.durationMs;
  let budget = limits.maxOperations;
  let lastLog = started;
  const worker = async (index: number) => {
    let draw = (index + 1) * 7919;
    while (Date.now() < deadline && budget > 0 && tally.errors < STOP_AFTER_ERRORS) {
      budget -= 1;
      draw = (draw * 1103515245 + 12345) >>> 0;
      const kind = pick(draw);
      const client = clients[draw % clients.length] as GuestClient;
      const begun = Date.now();
      try {
        await runOperation(kind, context, client);
        tally.operations[kind] += 1;
        tally.slowestMs[kind] = Math.max(tally.slowestMs[kind], Date.now() - begun);
      } catch (error) {
        tally.errors += 1;
        if (tally.errorSamples.length < MAX_ERROR_SAMPLES) tally.errorSamples.push(`${kind}: ${describe(error)}`);
      }
      if (Date.now() - lastLog >= 10_000) {
        lastLog = Date.now();
        const done = Object.values(tally.operations).reduce((sum, count) => sum + count, 0);
        const now = sampleProcess(context.agent.pid);
        log(
          `soak: ${((lastLog - started) / 1000).toFixed(0)} s, ${done} operations, ${tally.errors} errors; agent RSS ${mib(now.rssBytes)} MiB, ${now.fds} fds, ${now.descendants.length} processes`,
        );
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: limits.concurrency }, (_, index) => worker(index)));
    return Date.now() - started;
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}

/** The report as the lines the CLI prints. */
export function formatReport(report: SoakReport): string {
  const total = Object.values(report.operations).reduce((sum, count) => sum + count, 0);
  return [
    `soak: ${total} operations (${report.callsServed} calls served) in ${(report.durationMs / 1000).toFixed(1)} s by ${report.concurrency} workers`,
    `soak: operations ${JSON.stringify(report.operations)}`,
    `soak: slowest (ms) ${JSON.stringify(report.slowestMs)}`,
    `soak: errors ${report.errors}${report.errorSamples.length > 0 ? `: ${report.errorSamples.join(" | ")}` : ""}`,
    `soak: before: ${formatSnapshot(report.before)}`,
    `soak: after:  ${formatSnapshot(report.after)} (settled in ${(report.settleMs / 1000).toFixed(1)} s); peak RSS ${mib(report.peakRssBytes)} MiB`,
    `soak: ${report.passed ? "PASS" : `FAIL: ${report.problems.join("; ")}`}`,
  ].join("\n");
}

interface Context {
  agent: AgentProcess;
  guestDir: string;
  localDir: string;
  nextId: number;
}

function pick(draw: number): SoakOperation {
  const total = MIX.reduce((sum, [, weight]) => sum + weight, 0);
  let at = (draw >>> 8) % total;
  for (const [kind, weight] of MIX) {
    if (at < weight) return kind;
    at -= weight;
  }
  return "stat";
}

/** One operation; throws when anything about it is not as expected. */
async function runOperation(kind: SoakOperation, context: Context, client: GuestClient): Promise<void> {
  const id = context.nextId++;
  switch (kind) {
    case "exec-pipes": {
      const result = await client.run([
        "sh",
        "-c",
        'echo "out-$1"; echo "err-$1" >&2; exit $(($1 % 5))',
        "sh",
        `${id}`,
      ]);
      expectEqual(result.stdout, `out-${id}\n`, "stdout");
      expectEqual(result.stderr, `err-${id}\n`, "stderr");
      expectEqual(result.exit.code, id % 5, "exit code");
      return;
    }
    case "exec-stdin": {
      const input = randomBytes(id % 3 === 0 ? 256 * 1024 : 1024);
      const result = await client.run(["cat"], { input });
      if (!Buffer.from(result.stdoutBytes).equals(input)) throw new Error("cat did not echo its stdin exactly");
      return;
    }
    case "exec-tty": {
      const rows = 10 + (id % 50);
      const result = await client.run(["sh", "-c", "stty size; echo tty-$1", "sh", `${id}`], {
        tty: true,
        rows,
        cols: 100,
      });
      expectEqual(
        { stdout: result.stdout, exit: result.exit.code },
        { stdout: `${rows} 100\r\ntty-${id}\r\n`, exit: 0 },
        "tty output and exit",
      );
      return;
    }
    case "exec-kill": {
      const handle = client.exec(["sh", "-c", "sleep 30 & sleep 30; wait"], { tty: id % 2 === 0 });
      await handle.started;
      handle.kill("KILL");
      const exit = await handle.exit;
      expectEqual(exit.code, 137, "exit code after SIGKILL");
      return;
    }
    case "exec-cancel": {
      const controller = new AbortController();
      const handle = client.exec(["sleep", "30"], { signal: controller.signal });
      await handle.started;
      controller.abort();
      const error = await handle.exit.then(
        () => undefined,
        (reason: unknown) => reason,
      );
      if (!(error instanceof GuestError) || error.reason !== "cancelled") {
        throw new Error(`a cancelled exec ended with ${describe(error)}`);
      }
      return;
    }
    case "exec-timeout": {
      const result = await client.run(["sleep", "30"], { timeoutSeconds: 1 });
      expectEqual(result.exit.code, 124, "exit code after the timeout");
      return;
    }
    case "copy-roundtrip": {
      const data = randomBytes(id % 4 === 0 ? 512 * 1024 : 4096);
      const local = join(context.localDir, `up-${id}`);
      const guest = join(context.guestDir, `file-${id}`);
      const back = join(context.localDir, `down-${id}`);
      await writeFile(local, data);
      await client.copyTo(local, guest);
      await client.copyFrom(guest, back);
      if (!(await readFile(back)).equals(data)) throw new Error("a round trip changed the file");
      await Promise.all([rm(local), rm(guest), rm(back)]);
      return;
    }
    case "copy-tree": {
      const tree = join(context.localDir, `tree-${id}`);
      await mkdir(join(tree, "sub"), { recursive: true });
      for (let i = 0; i < 5; i += 1) await writeFile(join(tree, i % 2 ? "sub" : "", `f${i}`), `file ${i} of ${id}`);
      const guest = join(context.guestDir, `tree-${id}`);
      const result = await client.copyTo(tree, guest);
      expectEqual(result.entries, 7, "entries uploaded");
      const back = join(context.localDir, `tree-back-${id}`);
      const down = await client.copyFrom(guest, back);
      expectEqual(down.entries, 7, "entries downloaded");
      expectEqual(await readFile(join(back, "sub", "f3"), "utf8"), `file 3 of ${id}`, "tree contents");
      await Promise.all([tree, guest, back].map((path) => rm(path, { recursive: true })));
      return;
    }
    case "copy-cancel": {
      const local = join(context.localDir, `big-${id}`);
      await writeFile(local, Buffer.alloc(8 * 1024 * 1024, id % 256));
      const guest = join(context.guestDir, `big-${id}`);
      const controller = new AbortController();
      const error = await client
        .copyTo(local, guest, {
          signal: controller.signal,
          onProgress: ({ bytes }) => {
            if (bytes > 0) controller.abort();
          },
        })
        .then(
          () => undefined,
          (reason: unknown) => reason,
        );
      await rm(local);
      // A copy that finished before the abort took effect is fine too; anything else is not.
      if (error !== undefined && !(error instanceof CopyError && error.reason === "cancelled")) {
        throw new Error(`a cancelled upload ended with ${describe(error)}`);
      }
      await rm(guest, { force: true });
      return;
    }
    case "stat": {
      const stat = await client.stat(id % 2 ? "/tmp" : join(context.guestDir, "missing"));
      expectEqual(stat.exists, id % 2 === 1, "exists");
      return;
    }
    case "fresh-connection": {
      const fresh = createGuestClient(`unix:${context.agent.socketPath}`);
      try {
        expectEqual((await fresh.run(["echo", "fresh"])).stdout, "fresh\n", "stdout");
      } finally {
        await fresh.close();
      }
      return;
    }
  }
}

/**
 * Waits until the agent holds no more than `target` (or, without one, until it has no
 * child left and its counts stop changing), then forces a full GC and samples. Commands
 * end after their calls, and the agent closes a connection's socket a moment after the
 * client did.
 */
async function settledSnapshot(
  agent: AgentProcess,
  inspector: AgentInspector,
  target: SoakSnapshot | undefined,
  limitMs: number,
): Promise<SoakSnapshot> {
  const deadline = Date.now() + limitMs;
  let last = sampleProcess(agent.pid);
  let stableSince = Date.now();
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = sampleProcess(agent.pid);
    if (now.fds !== last.fds || now.descendants.length !== last.descendants.length) stableSince = Date.now();
    last = now;
    const reached = target
      ? now.fds <= target.fds && now.descendants.length <= target.processes
      : now.descendants.length === 0;
    if ((reached && Date.now() - stableSince >= 500) || Date.now() > deadline) break;
  }
  await inspector.collectGarbage();
  const memory = await inspector.memoryUsage();
  const stats = sampleProcess(agent.pid);
  return {
    rssBytes: stats.rssBytes,
    heapUsedBytes: memory.heapUsed,
    fds: stats.fds,
    processes: stats.descendants.length,
  };
}

function formatSnapshot(snapshot: SoakSnapshot): string {
  return `RSS ${mib(snapshot.rssBytes)} MiB, JS heap ${mib(snapshot.heapUsedBytes)} MiB, ${snapshot.fds} open fds, ${snapshot.processes} child processes`;
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

// Compared as JSON: the values are primitives or small plain objects.
function expectEqual<T>(actual: T, expected: T, what: string): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
