// Summaries of repeated measurements.

/** One measured quantity: its samples and their summary. */
export interface Measurement {
  /** Which part of the benchmark ("exec latency", "1 GiB to guest"...). */
  readonly section: string;
  /** What was measured ("guestkit, open connection", "ssh, ControlMaster"...). */
  readonly label: string;
  readonly unit: "ms" | "MiB/s" | "MiB" | "s" | "CPU s/GiB";
  readonly samples: number[];
  readonly median: number;
  /** 99th percentile, for latencies where the tail matters. */
  readonly p99?: number;
  /** Why this row could not be measured; samples are then empty. */
  readonly skipped?: string;
  /** Anything a reader needs to interpret the row. */
  readonly note?: string;
}

/** The q-quantile (0..1) of samples, nearest-rank: a value that was actually observed. */
export function quantile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Builds a Measurement from samples. */
export function measured(
  section: string,
  label: string,
  unit: Measurement["unit"],
  samples: number[],
  extra: { p99?: boolean; note?: string } = {},
): Measurement {
  return {
    section,
    label,
    unit,
    samples,
    median: quantile(samples, 0.5),
    ...(extra.p99 ? { p99: quantile(samples, 0.99) } : {}),
    ...(extra.note ? { note: extra.note } : {}),
  };
}

/** A row for a reference that could not run, saying why. */
export function skipped(section: string, label: string, unit: Measurement["unit"], why: string): Measurement {
  return { section, label, unit, samples: [], median: Number.NaN, skipped: why };
}

/** Milliseconds since `start` (a performance.now() value). */
export function since(start: number): number {
  return performance.now() - start;
}

/** Runs `fn` `count` times one after another and returns each run's duration in ms. */
export async function timeEach(count: number, fn: (index: number) => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await fn(i);
    times.push(since(start));
  }
  return times;
}

/** MiB/s for `bytes` moved in `ms`. */
export function mibPerSecond(bytes: number, ms: number): number {
  return bytes / (1024 * 1024) / (ms / 1000);
}
