// The table, the targets and the JSON file.
import { cpus, release, totalmem } from "node:os";
import type { Measurement } from "./stats.js";

/** A target (issue 14's), checked against figures of the same run. */
export interface TargetCheck {
  readonly target: string;
  /** The measured value the target is about, in words ("p50 +0.9 ms", "0.62x raw"). */
  readonly measured: string;
  /** undefined when a figure it needs is missing. */
  readonly met: boolean | undefined;
}

/** Where and when the figures were taken. */
export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly loadAverage: number[];
  readonly date: string;
}

/** Describes this machine. */
export function describeMachine(loadAverage: number[]): Machine {
  const cores = cpus();
  return {
    cpu: cores[0]?.model.trim() ?? "unknown",
    cores: cores.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    loadAverage: loadAverage.map((value) => Math.round(value * 100) / 100),
    date: new Date().toISOString(),
  };
}

/** Finds a row by section prefix and label prefix. */
export function find(rows: readonly Measurement[], section: string, label: string): Measurement | undefined {
  return rows.find((row) => row.section.startsWith(section) && row.label.startsWith(label) && !row.skipped);
}

/** Evaluates the targets that rows allow. */
export function checkTargets(rows: readonly Measurement[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const median = (section: string, label: string) => find(rows, section, label)?.median;
  const add = (
    target: string,
    values: (number | undefined)[],
    describe: (...v: number[]) => string,
    ok: (...v: number[]) => boolean,
  ) => {
    if (values.some((value) => value === undefined || Number.isNaN(value))) {
      checks.push({ target, measured: "not measured", met: undefined });
      return;
    }
    const numbers = values as number[];
    checks.push({ target, measured: describe(...numbers), met: ok(...numbers) });
  };
  const exec = "exec `true` latency";
  const open = median(exec, "guestkit, open connection");
  const floor = median(exec, "local spawn");
  add(
    "exec p50 on an open connection within 0.5 ms of local spawn",
    [open, floor],
    (o, f) => `${o - f >= 0 ? "+" : ""}${(o - f).toFixed(2)} ms`,
    (o, f) => o - f <= 0.5,
  );
  add(
    "client CPU per exec at most 1 ms",
    [median(exec, "guestkit, open connection: client CPU")],
    (v) => `${v.toFixed(2)} ms`,
    (v) => v <= 1,
  );
  add(
    "guestctl exec -- true within 60 ms of node -e 0",
    [median(exec, "guestctl exec"), median(exec, "node -e 0")],
    (g, n) => `+${(g - n).toFixed(0)} ms (${g.toFixed(0)} vs ${n.toFixed(0)} ms)`,
    (g, n) => g - n <= 60,
  );
  // Bulk data: rates, so higher is better; the ratio is ours over theirs.
  const bulk: Array<[string, string, string]> = [
    ["copy to guest", "file to guest", "guestkit copyTo"],
    ["copy from guest", "file from guest", "guestkit copyFrom"],
    ["stdout streaming", "stdout streaming", "guestkit exec"],
  ];
  for (const [name, sectionEnd, label] of bulk) {
    const section =
      rows.find((row) => row.section.endsWith(sectionEnd) || row.section.startsWith(sectionEnd))?.section ?? sectionEnd;
    const ours = find(rows, section, label)?.unit === "MiB/s" ? median(section, label) : undefined;
    add(
      `${name} >= 0.8x raw socket`,
      [ours, median(section, "raw")],
      (o, r) => `${(o / r).toFixed(2)}x`,
      (o, r) => o / r >= 0.8,
    );
    add(
      `${name} >= 1.5x ssh`,
      [ours, median(section, "ssh")],
      (o, s) => `${(o / s).toFixed(2)}x`,
      (o, s) => o / s >= 1.5,
    );
  }
  for (const direction of ["to guest", "from guest"]) {
    const section = rows.find((row) => row.section.endsWith(`files ${direction}`))?.section ?? `files ${direction}`;
    const ours = median(section, "guestkit");
    const tar = median(section, direction === "to guest" ? "tar c | ssh" : "ssh host tar");
    add(
      `tree ${direction} 1.5x faster than tar | ssh`,
      [ours, tar],
      (o, t) => `${(t / o).toFixed(2)}x`,
      (o, t) => t / o >= 1.5,
    );
  }
  add(
    "agent idle RSS at most 60 MiB",
    [median("agent", "idle RSS"), median("agent", "grpc-js server alone: idle RSS")],
    (v, f) => `${v.toFixed(1)} MiB (a grpc-js server alone: ${f.toFixed(1)})`,
    (v) => v <= 60,
  );
  add(
    "agent start to serving at most 150 ms",
    [median("agent", "start to serving"), median("agent", "grpc-js server alone: start")],
    (v, f) => `${v.toFixed(0)} ms (a grpc-js server alone: ${f.toFixed(0)})`,
    (v) => v <= 150,
  );
  for (const direction of ["to guest", "from guest"]) {
    const section = rows.find((row) => row.section.endsWith(`file ${direction}`))?.section ?? `file ${direction}`;
    add(
      `host RSS during the copy ${direction} at most 64 MiB`,
      [median(section, "guestctl cp: host RSS")],
      (v) => `${v.toFixed(1)} MiB`,
      (v) => v <= 64,
    );
  }
  return checks;
}

/** The table as text. */
export function formatTable(rows: readonly Measurement[], checks: readonly TargetCheck[], machine: Machine): string {
  const lines: string[] = [];
  lines.push(
    `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}, load ${machine.loadAverage.join(" ")}`,
  );
  const header = ["section", "what", "median", "p99", "n", "vs first row"];
  const table: string[][] = [header];
  const firsts = new Map<string, Measurement>();
  for (const row of rows) {
    // Ratios compare like with like: each row against the section's first row of its unit.
    const key = `${row.section}\u0000${row.unit}`;
    if (!firsts.has(key) && !row.skipped) firsts.set(key, row);
    const first = firsts.get(key);
    const ratio =
      row.skipped || !first || first === row || first.unit !== row.unit
        ? ""
        : `${(row.median / first.median).toFixed(2)}x`;
    table.push([
      row.section,
      row.label,
      row.skipped ? `cannot run: ${row.skipped}` : `${format(row.median)} ${row.unit}`,
      row.p99 === undefined ? "" : `${format(row.p99)} ${row.unit}`,
      row.skipped ? "" : String(row.samples.length),
      ratio,
    ]);
  }
  const widths = header.map((_, column) => Math.max(...table.map((cells) => (cells[column] ?? "").length)));
  for (const [index, cells] of table.entries()) {
    lines.push(
      cells
        .map((cell, column) => cell.padEnd(widths[column] as number))
        .join("  ")
        .trimEnd(),
    );
    if (index === 0) lines.push(widths.map((width) => "-".repeat(width)).join("  "));
  }
  const notes = rows.filter((row) => row.note);
  if (notes.length > 0) {
    lines.push("");
    lines.push("notes:");
    for (const row of notes) lines.push(`  ${row.section} / ${row.label}: ${row.note}`);
  }
  lines.push("");
  lines.push("targets:");
  for (const check of checks) {
    const verdict = check.met === undefined ? "n/a " : check.met ? "MET " : "MISS";
    lines.push(`  ${verdict}  ${check.target}: ${check.measured}`);
  }
  return lines.join("\n");
}

function format(value: number): string {
  if (Number.isNaN(value)) return "-";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}
