// Output of a running command between the gRPC stream and whoever iterates it.
//
// Two things must both hold: output must never pile up without bound, and a caller who
// only awaits the exit must still get it (the exit comes in-band, after the output, so
// a stream that stops being read would never deliver it). Hence:
// - while an iterator is attached, the stream is paused when too much is queued: real
//   backpressure, down to the command's pipe in the guest;
// - before any iterator is attached, output is kept up to a limit and the rest is
//   dropped (and counted), so the stream keeps flowing to the exit;
// - after the iterator is left early (`break`), output is dropped.

/** One item of output. */
export interface OutputItem {
  readonly data: Uint8Array;
}

/** Options of an OutputQueue. */
export interface OutputQueueOptions {
  /** Queued bytes above which the source is paused while an iterator is attached. */
  highWaterBytes: number;
  /** Bytes kept while no iterator is attached; more is dropped. */
  unconsumedLimitBytes: number;
  /** Stop the source. */
  pause(): void;
  /** Restart the source. */
  resume(): void;
}

/** A single-consumer async queue of output with the flow rules above. */
export class OutputQueue<T extends OutputItem> implements AsyncIterable<T> {
  readonly #options: OutputQueueOptions;
  #items: T[] = [];
  #queuedBytes = 0;
  #droppedBytes = 0;
  #consumer: "none" | "attached" | "left" = "none";
  #paused = false;
  #done = false;
  #error: unknown;
  #failed = false;
  #wake: (() => void) | undefined;

  constructor(options: OutputQueueOptions) {
    this.#options = options;
  }

  /** Output bytes dropped because nobody was iterating (see the file comment). */
  get droppedBytes(): number {
    return this.#droppedBytes;
  }

  /** Adds output from the source. */
  push(item: T): void {
    if (this.#done) return;
    const size = item.data.byteLength;
    if (
      this.#consumer === "left" ||
      (this.#consumer === "none" && this.#queuedBytes + size > this.#options.unconsumedLimitBytes)
    ) {
      this.#droppedBytes += size;
      return;
    }
    this.#items.push(item);
    this.#queuedBytes += size;
    if (this.#consumer === "attached" && !this.#paused && this.#queuedBytes > this.#options.highWaterBytes) {
      this.#paused = true;
      this.#options.pause();
    }
    this.#notify();
  }

  /** No more output: the iterator ends once it has taken what is queued. */
  end(): void {
    this.#done = true;
    this.#notify();
  }

  /** The source failed: the iterator throws `error` once it has taken what is queued. */
  fail(error: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#failed = true;
    this.#error = error;
    this.#notify();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.#consumer !== "none") throw new Error("the output of a command can be iterated only once");
    this.#consumer = "attached";
    return {
      next: () => this.#next(),
      return: async () => {
        this.#leave();
        return { done: true, value: undefined };
      },
    };
  }

  async #next(): Promise<IteratorResult<T>> {
    for (;;) {
      const item = this.#items.shift();
      if (item) {
        this.#queuedBytes -= item.data.byteLength;
        if (this.#paused && this.#queuedBytes <= this.#options.highWaterBytes / 2) {
          this.#paused = false;
          this.#options.resume();
        }
        return { done: false, value: item };
      }
      if (this.#done) {
        if (this.#failed) {
          this.#failed = false;
          throw this.#error;
        }
        return { done: true, value: undefined };
      }
      if (this.#consumer === "left") return { done: true, value: undefined };
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  #leave(): void {
    this.#consumer = "left";
    for (const item of this.#items) this.#droppedBytes += item.data.byteLength;
    this.#items = [];
    this.#queuedBytes = 0;
    if (this.#paused) {
      this.#paused = false;
      this.#options.resume();
    }
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
