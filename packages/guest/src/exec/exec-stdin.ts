// A command's stdin between the Exec stream and the command, so that the stream is read
// as messages arrive whatever the command does with its input (see the protocol
// package's exec-stdin-credit capability in capabilities.ts for why, and ExecResponse.stdin_consumed for the rule).
import { CHUNK_SIZE, EXEC_STDIN_WINDOW_BYTES } from "@guestkit/protocol";
import type { ProcessHandle } from "./process-handle.js";

/**
 * Queued stdin beyond which the agent stops reading the stream. A client that honours
 * the credit sends a message (at most CHUNK_SIZE) only while less than the window is in
 * flight, so it never gets here.
 */
const QUEUE_LIMIT_BYTES = EXEC_STDIN_WINDOW_BYTES + CHUNK_SIZE;

/**
 * Consumed bytes not yet reported at which a credit report goes out. A client that
 * honours the credit is held up only while a whole window is in flight; as less than
 * this is unreported, the agent then still has stdin queued, and the write that takes
 * it brings the next report. A quarter of the window: one report per 128 KiB of stdin.
 */
const REPORT_EVERY_BYTES = EXEC_STDIN_WINDOW_BYTES / 4;

/**
 * The stdin of one command: bytes queued in arrival order, written to the command one
 * message at a time (each write resolves once the kernel took it), then the end of input
 * when it was asked for. What the command has taken is reported as credit.
 */
export class StdinQueue {
  readonly #process: ProcessHandle;
  readonly #report: (consumed: bigint) => void;
  readonly #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #consumed = 0;
  #reported = 0;
  #writing = false;
  #closing = false;
  #discarded = false;
  #roomWaiters: Array<() => void> = [];

  /** `report` sends the credit: the bytes consumed so far. */
  constructor(process: ProcessHandle, report: (consumed: bigint) => void) {
    this.#process = process;
    this.#report = report;
  }

  /**
   * Queues bytes for the command. Returns false when more than QUEUE_LIMIT_BYTES are
   * now queued: a client that ignores the credit (existing hosts) is then held back
   * by HTTP/2 flow control, by reading no further until `room()` resolves.
   */
  push(bytes: Uint8Array): boolean {
    if (this.#discarded || this.#closing) return true;
    if (bytes.length > 0) {
      this.#queue.push(bytes);
      this.#queuedBytes += bytes.length;
      void this.#pump();
    }
    return this.#queuedBytes <= QUEUE_LIMIT_BYTES;
  }

  /** Resolves once no more than QUEUE_LIMIT_BYTES are queued (or the queue was dropped). */
  room(): Promise<void> {
    if (this.#queuedBytes <= QUEUE_LIMIT_BYTES || this.#discarded) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /** The end of input, once everything queued before it has been written. */
  close(): void {
    if (this.#closing || this.#discarded) return;
    this.#closing = true;
    void this.#pump();
  }

  /** The command is gone: what is queued has nowhere to go. */
  discard(): void {
    this.#discarded = true;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    this.#wakeRoomWaiters();
  }

  async #pump(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      for (let bytes = this.#queue.shift(); bytes !== undefined && !this.#discarded; bytes = this.#queue.shift()) {
        await this.#process.writeStdin(bytes);
        if (this.#discarded) return;
        this.#queuedBytes -= bytes.length;
        this.#consumed += bytes.length;
        if (this.#consumed - this.#reported >= REPORT_EVERY_BYTES) {
          this.#reported = this.#consumed;
          this.#report(BigInt(this.#consumed));
        }
        if (this.#queuedBytes <= QUEUE_LIMIT_BYTES) this.#wakeRoomWaiters();
      }
      if (this.#closing && !this.#discarded) await this.#process.closeStdin();
    } finally {
      this.#writing = false;
    }
  }

  #wakeRoomWaiters(): void {
    const waiters = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const wake of waiters) wake();
  }
}
