// Forwards a command's output to the client as it is produced, with backpressure both
// ways, and decides when output is over once the command has exited.
import type { Readable } from "node:stream";
import { allocateBulkData, CHUNK_SIZE } from "@guestkit/protocol";
import type { OutputSource } from "./process-handle.js";

/**
 * How long output is still read after the command exited while its pipes (or terminal)
 * stay open. They stay open when something it started in the background holds them;
 * waiting for that would keep the call open as long as the background process lives,
 * which is the hang users of other agents keep reporting. Only time spent ready to read
 * counts: time the client holds us back does not, so a slow client still gets
 * everything the command wrote before it exited.
 */
export const DRAIN_AFTER_EXIT_MS = 500;

/**
 * Bytes still forwarded after the exit, beyond what was already buffered in the agent.
 * A Linux pipe holds at most 1 MiB (fs.pipe-max-size), so everything the command wrote
 * before exiting fits; the rest would come from a background process, which could
 * otherwise keep a slow client busy for as long as it runs.
 */
export const DRAIN_AFTER_EXIT_BYTES = 1024 * 1024;

// Granularity of the drain clock (see #spendDrainTime).
const DRAIN_TICK_MS = 50;

/** What is left of the drain budget after the exit, and the cut that ends it. */
interface DrainState {
  remainingMs: number;
  bytesLeft: number;
  /** When the budget was last charged. */
  since: number;
  cutOff: () => void;
}

/** Where output goes: one message per call; false means "stop until drain". */
export interface OutputSink {
  write(kind: OutputSource["kind"], bytes: Uint8Array): boolean;
  /** Registers the listener for the sink's 'drain'. */
  onDrain(listener: () => void): void;
}

/**
 * Reads a command's outputs into the sink, pausing them while the sink is full. What
 * arrives within one turn of the event loop goes out as one message (up to CHUNK_SIZE):
 * libuv reads a ready stream up to 32 times per turn, and a terminal hands out a few
 * KiB per read, so one message per read made TTY output about four times slower. The
 * batch is sent at the end of the same turn, so nothing waits longer than it did.
 */
export class OutputForwarder {
  readonly #sink: OutputSink;
  readonly #pending = new Map<OutputSource["kind"], { chunks: Buffer[]; bytes: number }>();
  #flushScheduled = false;
  readonly #open = new Set<Readable>();
  readonly #sources: readonly OutputSource[];
  readonly #allEnded: Promise<void>;
  #paused = false;
  #stopped = false;
  // After the exit: what is left of the drain budget, and the timer spending it.
  #afterExit: DrainState | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastLook: NodeJS.Immediate | undefined;

  constructor(sources: readonly OutputSource[], sink: OutputSink) {
    this.#sources = sources;
    this.#sink = sink;
    this.#allEnded = Promise.all(
      sources.map(
        ({ kind, stream }) =>
          new Promise<void>((resolve) => {
            this.#open.add(stream);
            const ended = () => {
              // What was read before the end goes out before anything that follows it.
              this.#flush(kind);
              this.#open.delete(stream);
              resolve();
            };
            stream.once("end", ended);
            stream.once("close", ended);
            // Errors end a stream (EIO is how a terminal says EOF); they are not the client's.
            stream.on("error", () => {});
          }),
      ),
    ).then(() => {});
    sink.onDrain(() => this.#resume());
  }

  /** Starts forwarding. Call after `started` was sent, so that it comes first. */
  start(): void {
    for (const { kind, stream } of this.#sources) {
      stream.on("data", (chunk: Buffer) => this.#forward(kind, chunk));
    }
  }

  /**
   * Waits for the outputs to end after the command exited, within the drain budget.
   * Resolves true when something still held them open and they were cut off.
   */
  async finishAfterExit(): Promise<boolean> {
    if (this.#open.size === 0 || this.#stopped) return false;
    let buffered = 0;
    for (const stream of this.#open) buffered += stream.readableLength;
    const cutOff = new Promise<boolean>((resolve) => {
      this.#afterExit = {
        remainingMs: DRAIN_AFTER_EXIT_MS,
        bytesLeft: DRAIN_AFTER_EXIT_BYTES + buffered,
        since: Date.now(),
        cutOff: () => resolve(true),
      };
    });
    if (!this.#paused) this.#startClock();
    const truncated = await Promise.race([this.#allEnded.then(() => false), cutOff]);
    clearTimeout(this.#timer);
    clearImmediate(this.#lastLook);
    if (truncated) {
      this.#flushAll();
      this.stop();
    }
    return truncated;
  }

  /** Stops reading and destroys the outputs (cancelled call, or drain over). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearImmediate(this.#lastLook);
    for (const stream of this.#open) stream.destroy();
  }

  #forward(kind: OutputSource["kind"], chunk: Buffer): void {
    if (this.#stopped) return;
    let pending = this.#pending.get(kind);
    if (!pending) {
      pending = { chunks: [], bytes: 0 };
      this.#pending.set(kind, pending);
    }
    pending.chunks.push(chunk);
    pending.bytes += chunk.length;
    if (pending.bytes >= CHUNK_SIZE) {
      this.#flush(kind);
    } else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => {
        this.#flushScheduled = false;
        this.#flushAll();
      });
    }
    const afterExit = this.#afterExit;
    if (afterExit) {
      afterExit.bytesLeft -= chunk.length;
      if (afterExit.bytesLeft < 0) afterExit.cutOff();
    }
  }

  #flushAll(): void {
    for (const kind of this.#pending.keys()) this.#flush(kind);
  }

  #flush(kind: OutputSource["kind"]): void {
    const pending = this.#pending.get(kind);
    if (!pending || pending.bytes === 0 || this.#stopped) return;
    const bytes = pending.chunks.length === 1 ? (pending.chunks[0] as Buffer) : joined(pending.chunks, pending.bytes);
    pending.chunks = [];
    pending.bytes = 0;
    for (let offset = 0; offset < bytes.length; offset += CHUNK_SIZE) {
      if (!this.#sink.write(kind, bytes.subarray(offset, offset + CHUNK_SIZE))) this.#pause();
    }
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    for (const stream of this.#open) stream.pause();
    this.#stopClock();
  }

  #resume(): void {
    if (!this.#paused || this.#stopped) return;
    this.#paused = false;
    for (const stream of this.#open) stream.resume();
    this.#startClock();
  }

  #startClock(): void {
    const afterExit = this.#afterExit;
    if (!afterExit) return;
    afterExit.since = Date.now();
    const tick = () => {
      this.#spendDrainTime(afterExit);
      if (afterExit.remainingMs > 0) {
        this.#timer = setTimeout(tick, Math.min(DRAIN_TICK_MS, afterExit.remainingMs));
        return;
      }
      // The cut comes after one more poll phase (setImmediate runs right after it), so
      // that what is ready to read now is read before the output is declared cut off.
      this.#lastLook = setImmediate(afterExit.cutOff);
    };
    this.#timer = setTimeout(tick, Math.min(DRAIN_TICK_MS, afterExit.remainingMs));
  }

  #stopClock(): void {
    const afterExit = this.#afterExit;
    if (!afterExit) return;
    clearTimeout(this.#timer);
    clearImmediate(this.#lastLook);
    this.#spendDrainTime(afterExit);
  }

  // The drain budget is spent in ticks, each counting at most its own length: time the
  // agent's event loop spent elsewhere is not time the command's output had to arrive.
  // Forks are synchronous, and a burst of commands starting at once held the loop for
  // hundreds of milliseconds; a single overdue timer then cut outputs off before the
  // poll phase that would have read them (a TTY command's whole output was lost about
  // once in a hundred, with `truncated` set).
  #spendDrainTime(afterExit: DrainState): void {
    const now = Date.now();
    afterExit.remainingMs -= Math.min(now - afterExit.since, DRAIN_TICK_MS);
    afterExit.since = now;
  }
}

// Several reads as one message: joined in a buffer with room for the message's prefix,
// so the serializer does not copy them a second time (see allocateBulkData). Only a
// batch that fits one message gets that; a larger one is cut into several below.
function joined(chunks: readonly Buffer[], bytes: number): Buffer {
  if (bytes > CHUNK_SIZE) return Buffer.concat(chunks, bytes);
  const out = allocateBulkData(bytes);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
