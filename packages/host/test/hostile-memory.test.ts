// A guest that makes the host keep little and hold a lot: messages padded with MiBs of
// unknown fields around one byte of data, and texts of MiBs where the host keeps a few
// KiB. What the host keeps must hold only what it keeps. Each host runs in a process of
// its own (fixtures/memory-probe.ts, or guestctl itself), so what is measured is that
// host alone: the memory live after a full GC while it runs and once it is done.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type HostileAgent,
  type HostileAgentOptions,
  type RogueAgent,
  type RogueAgentOptions,
  runHeapProbe,
  sampleRss,
  startHostileAgent,
  startRogueAgent,
} from "@guestkit/testkit";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startCli } from "./cli-support.js";

const MiB = 1024 * 1024;
const PROBE = fileURLToPath(new URL("./fixtures/memory-probe.ts", import.meta.url));

interface ProbeReport {
  baseline: number;
  peak: number;
  final: number;
  outcomes: Array<Record<string, unknown>>;
}

let work: string;
let agent: HostileAgent | RogueAgent | undefined;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-hostile-memory-"));
});

afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  await rm(work, { recursive: true, force: true });
});

async function hostile(options: HostileAgentOptions): Promise<string> {
  agent = await startHostileAgent(options);
  return `unix:${agent.socketPath}`;
}

async function rogue(options: RogueAgentOptions): Promise<string> {
  agent = await startRogueAgent(options);
  return `unix:${agent.socketPath}`;
}

/** Runs fixtures/memory-probe.ts with `job` and returns its report. */
async function probe(job: Record<string, unknown>): Promise<ProbeReport> {
  return runHeapProbe<ProbeReport>([PROBE, JSON.stringify(job)]);
}

const inMiB = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;

function figures(report: ProbeReport): string {
  return `live MiB: baseline ${inMiB(report.baseline)}, peak ${inMiB(report.peak)}, final ${inMiB(report.final)}`;
}

describe("messages padded with MiBs of unknown fields around one byte of data", () => {
  // Before the decoder copied small values out, every byte kept held its whole 4 MiB
  // message: 400 MiB live at the peak, for either call. Since: about 12 MiB (what is in
  // flight at the moment of a sample).
  it("run() keeping 100 bytes of stdout keeps its memory bounded", async () => {
    const target = await rogue({ scenario: "exec-padded-output", count: 100, padding: 4 * MiB });
    const report = await probe({ target, op: "run" });
    expect(report.outcomes).toEqual([{ stdout: "o".repeat(100) }]);
    expect(inMiB(report.peak - report.baseline), figures(report)).toBeLessThan(100);
  }, 120_000);

  it("copyFrom receiving a 100-byte file keeps its memory bounded", async () => {
    const target = await hostile({ scenario: "file", count: 100, chunkSize: 1, padding: 4 * MiB });
    const dest = join(work, "dest");
    await mkdir(dest);
    const report = await probe({ target, op: "copyFrom", from: "/srv/root", to: dest });
    expect(report.outcomes).toEqual([{ skippedCount: 0 }]);
    expect(await readFile(join(dest, "root"), "latin1")).toBe("a".repeat(100));
    expect(inMiB(report.peak - report.baseline), figures(report)).toBeLessThan(100);
  }, 120_000);

  // Before: a peak RSS of 930 MiB with 8 MiB of padding per message; since, 170 MiB
  // (garbage not yet collected, which RSS counts).
  it("guestctl cp receiving a 100-byte file keeps its RSS bounded", async () => {
    const target = await hostile({ scenario: "file", count: 100, chunkSize: 1, padding: 8 * MiB });
    const dest = join(work, "dest");
    await mkdir(dest);
    const cli = startCli(["--target", target, "cp", "guest:/srv/root", dest]);
    const rss = sampleRss(cli.child.pid as number, 20);
    const result = await cli.result;
    const peak = rss.stop().peakBytes;
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(await readFile(join(dest, "root"), "latin1")).toBe("a".repeat(100));
    expect(inMiB(peak)).toBeLessThan(300);
  }, 120_000);
});

describe("texts of MiBs where the host keeps a few KiB", () => {
  // Before cutText, each kept cut held its whole source: 12 MiB per entry, 356 MiB for
  // 30. Since: nothing measurable (the 30 cuts take 150 KiB).
  it("skipped entries: the heap after the copy holds only the cut texts", async () => {
    const target = await hostile({ scenario: "giant-skipped", count: 30 });
    const dest = join(work, "dest");
    await mkdir(dest);
    const report = await probe({ target, op: "copyFrom", from: "/srv/root", to: dest });
    expect(report.outcomes).toEqual([{ skippedCount: 30, skippedLengths: [4096, 1000, 100] }]);
    expect(inMiB(report.final - report.baseline), figures(report)).toBeLessThan(32);
  }, 120_000);

  // The rogue agent answers each call with texts of 14 to 15 MiB in all. Before cutText,
  // twenty errors held 270 to 310 MiB, 14 MiB more with each. Since: nothing measurable.
  const shouting: Array<[RogueAgentOptions["scenario"], (work: string) => Promise<Record<string, unknown>>]> = [
    ["exec-giant-texts", async () => ({ op: "run" })],
    ["stat-giant-texts", async () => ({ op: "stat", from: "/x" })],
    ["copyfrom-giant-error", async (dir) => ({ op: "copyFrom", from: "/srv/root", to: dir })],
    [
      "copyto-giant-texts",
      async (dir) => {
        const source = join(dir, "source");
        await writeFile(source, "x");
        return { op: "copyTo", from: source, to: "/guest/new" };
      },
    ],
  ];
  for (const [scenario, job] of shouting) {
    it(`${scenario}: twenty errors kept hold only their cut texts`, async () => {
      const target = await rogue({ scenario });
      const report = await probe({ target, times: 20, ...(await job(work)) });
      expect(report.outcomes).toHaveLength(20);
      for (const outcome of report.outcomes) expect(outcome.error).toMatch(/Error$/);
      expect(inMiB(report.final - report.baseline), figures(report)).toBeLessThan(32);
    }, 120_000);
  }
});
