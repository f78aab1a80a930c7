// Many execs at once on one connection: the total time of the batch, each call's
// latency, and what it costs the agent in memory.
import type { GuestClient } from "@guestkit/host";
import { sampleRss } from "@guestkit/testkit";
import { runTrue } from "./exec-latency.js";
import { type Measurement, measured } from "./stats.js";

/** Runs `concurrency` execs of `true` at once, `rounds` times. */
export async function measureConcurrentExecs(
  client: GuestClient,
  agentPid: number,
  concurrency: number,
  rounds: number,
): Promise<Measurement[]> {
  const section = `${concurrency} concurrent execs, one connection`;
  const totals: number[] = [];
  const latencies: number[] = [];
  const peaks: number[] = [];
  const failures = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    const sampler = sampleRss(agentPid, 5);
    const start = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        const callStart = performance.now();
        try {
          await runTrue(client);
          latencies.push(performance.now() - callStart);
        } catch (error) {
          const message = (error as Error).message;
          failures.set(message, (failures.get(message) ?? 0) + 1);
        }
      }),
    );
    totals.push(performance.now() - start);
    peaks.push(sampler.stop().peakBytes / 2 ** 20);
  }
  const failed = [...failures].map(([message, count]) => `${count} x ${message}`).join("; ");
  return [
    measured(section, "total time of the batch", "ms", totals, {
      note: failed ? `FAILED calls: ${failed}` : `all ${concurrency * rounds} calls exited 0`,
    }),
    measured(section, "per-call latency", "ms", latencies, { p99: true }),
    measured(section, "agent RSS peak during the batch", "MiB", peaks, { note: "VmRSS sampled every 5 ms" }),
  ];
}
