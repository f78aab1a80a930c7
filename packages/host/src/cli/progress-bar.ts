// The progress line `guestctl cp` draws on stderr for a large transfer. Only on a
// terminal, and only for a transfer that is large (its size is known and big) or has
// taken a while: a small copy prints nothing, like cp(1).
import type { WriteStream } from "node:tty";
import type { CopyProgress } from "../copy/copy-types.js";
import { printable } from "./exit-status.js";

/** Options of a progress bar. */
export interface ProgressBarOptions {
  /** Total file bytes, when known (a single file). */
  totalBytes?: number;
  /** What is being copied, for the line. */
  label: string;
}

// Known to be at least this big: shown from the start.
const LARGE_BYTES = 8 * 1024 * 1024;
// Size unknown (a tree) or small: shown once the copy has taken this long.
const SHOW_AFTER_MS = 1000;
const REDRAW_MS = 100;

/** A progress line on a terminal. */
export class ProgressBar {
  readonly #stream: WriteStream;
  readonly #options: ProgressBarOptions;
  readonly #started = Date.now();
  readonly #timer: NodeJS.Timeout;
  #latest: CopyProgress = { bytes: 0, entries: 0, path: "" };
  #shown = false;

  constructor(stream: WriteStream, options: ProgressBarOptions) {
    this.#stream = stream;
    this.#options = options;
    this.#timer = setInterval(() => this.#tick(), REDRAW_MS);
    this.#timer.unref();
    // Known to be large: drawn at once, so even a fast copy shows it was measured.
    this.#tick();
  }

  /** Records progress (drawn at the next redraw). */
  update(progress: CopyProgress): void {
    this.#latest = progress;
  }

  /** Removes the line; when it was shown, leaves a one-line summary in its place. */
  finish(succeeded: boolean): void {
    clearInterval(this.#timer);
    if (!this.#shown) return;
    const seconds = (Date.now() - this.#started) / 1000;
    const { bytes, entries } = this.#latest;
    const summary = succeeded
      ? `copied ${formatBytes(bytes)} in ${entries} ${entries === 1 ? "entry" : "entries"}, ${seconds.toFixed(1)} s (${formatBytes(bytes / Math.max(seconds, 0.001))}/s)\n`
      : "";
    this.#stream.write(`\r\x1b[K${summary}`);
  }

  #tick(): void {
    const elapsed = Date.now() - this.#started;
    const total = this.#options.totalBytes;
    if (!this.#shown && !(total !== undefined && total >= LARGE_BYTES) && elapsed < SHOW_AFTER_MS) return;
    this.#shown = true;
    this.#stream.write(`\r\x1b[K${this.#line(elapsed)}`);
  }

  #line(elapsedMs: number): string {
    const width = Math.max(40, (this.#stream.columns || 80) - 1);
    const { bytes, entries, path } = this.#latest;
    const rate = `${formatBytes(bytes / Math.max(elapsedMs / 1000, 0.001))}/s`;
    const total = this.#options.totalBytes;
    if (total !== undefined && total > 0) {
      const fraction = Math.min(1, bytes / total);
      const numbers = ` ${Math.floor(fraction * 100)
        .toString()
        .padStart(3)}% ${formatBytes(bytes)} / ${formatBytes(total)} ${rate}`;
      const label = fit(this.#options.label, Math.max(10, Math.floor(width / 3)));
      const barWidth = Math.max(10, width - label.length - numbers.length - 3);
      const filled = Math.round(fraction * barWidth);
      return `${label} [${"=".repeat(filled)}${" ".repeat(barWidth - filled)}]${numbers}`;
    }
    const numbers = ` ${entries} ${entries === 1 ? "entry" : "entries"} ${formatBytes(bytes)} ${rate}`;
    return `${fit(printable(path || this.#options.label), width - numbers.length)}${numbers}`;
  }
}

/** Bytes for people: 512 B, 1.5 KiB, 120.3 MiB. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

// Shortens from the left, where a path's least telling part is.
function fit(text: string, width: number): string {
  if (width <= 1) return "";
  return text.length <= width ? text : `…${text.slice(text.length - width + 1)}`;
}
