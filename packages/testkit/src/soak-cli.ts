// `pnpm soak [--duration SECONDS] [--concurrency N] [--max-operations N]`: runs the soak
// (soak.ts) against a fresh agent, prints its figures, and exits 1 unless the agent came
// back to where it started with no errors.
import { parseArgs } from "node:util";
import { runSoak } from "./soak.js";

const USAGE = `usage: pnpm soak [--duration SECONDS] [--concurrency N] [--max-operations N] [--rss-tolerance MIB]
  --duration SECONDS     how long to load the agent (default 300)
  --concurrency N        workers running operations at the same time (default 200)
  --max-operations N     stop earlier after this many operations
  --rss-tolerance MIB    RSS growth allowed from start to end (default 32)
`;

function positive(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, not "${text}"`);
  return value;
}

async function main(): Promise<number> {
  let options: Parameters<typeof runSoak>[0];
  try {
    const { values } = parseArgs({
      options: {
        duration: { type: "string" },
        concurrency: { type: "string" },
        "max-operations": { type: "string" },
        "rss-tolerance": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const maxOperations = values["max-operations"];
    options = {
      durationMs: positive(values.duration, "duration", 300) * 1000,
      concurrency: Math.floor(positive(values.concurrency, "concurrency", 200)),
      rssToleranceBytes: positive(values["rss-tolerance"], "rss-tolerance", 32) * 1024 * 1024,
      ...(maxOperations === undefined
        ? {}
        : { maxOperations: Math.floor(positive(maxOperations, "max-operations", Number.POSITIVE_INFINITY)) }),
      log: (line) => process.stdout.write(`${line}\n`),
    };
  } catch (error) {
    process.stderr.write(`soak: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const report = await runSoak(options);
  return report.passed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`soak: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
