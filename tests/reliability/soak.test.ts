// The short form of `pnpm soak` (packages/testkit/src/soak.ts): a fresh agent under
// hundreds of concurrent execs (pipes and TTYs, killed, cancelled, timed out), copies
// (round trips checked byte for byte, trees, cancelled uploads) and stats, then back to
// where it started: the same open fds, no child process, the JS heap after a full GC
// and RSS within their tolerances, and no operation that went wrong.
// GUESTKIT_SOAK_SECONDS and GUESTKIT_SOAK_CONCURRENCY make it longer or wider.
import { runSoak } from "@guestkit/testkit";
import { expect, it } from "vitest";

const SECONDS = Number(process.env.GUESTKIT_SOAK_SECONDS ?? 30);
const CONCURRENCY = Number(process.env.GUESTKIT_SOAK_CONCURRENCY ?? 150);

it(`soak: ${CONCURRENCY} workers for ${SECONDS} s leave the agent as they found it`, async () => {
  const report = await runSoak({
    durationMs: SECONDS * 1000,
    concurrency: CONCURRENCY,
    warmupMs: 8000,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  const operations = Object.values(report.operations).reduce((sum, count) => sum + count, 0);
  expect(report.errorSamples).toEqual([]);
  expect(report.problems).toEqual([]);
  expect(report.after.fds).toBe(report.before.fds);
  expect(report.after.processes).toBe(0);
  expect(operations).toBeGreaterThan(1000);
  for (const [kind, count] of Object.entries(report.operations)) expect(count, kind).toBeGreaterThan(0);
  expect(report.passed).toBe(true);
}, 180_000);
