// Small-file batching's bounds, for both directions: whole entries (directories,
// symlinks, small files) travel many to a `batch` message, one message through gRPC's
// per-message machinery instead of three, up to MAX_BATCH_ENTRIES entries and
// MAX_BATCH_BYTES of data per message.
import { MAX_BATCH_BYTES, MAX_BATCH_ENTRIES } from "@guestkit/protocol";

/** The entries waiting for the next `batch` message. */
export class EntryBatch<Entry> {
  #entries: Entry[] = [];
  #bytes = 0;

  /** Whether the batch must be sent before an entry of `bytes` data joins it. */
  isFullFor(bytes: number): boolean {
    return this.#entries.length >= MAX_BATCH_ENTRIES || this.#bytes + bytes > MAX_BATCH_BYTES;
  }

  add(entry: Entry, bytes: number): void {
    this.#entries.push(entry);
    this.#bytes += bytes;
  }

  /** The waiting entries, now no longer waiting; undefined when there are none. */
  take(): Entry[] | undefined {
    if (this.#entries.length === 0) return undefined;
    const entries = this.#entries;
    this.#entries = [];
    this.#bytes = 0;
    return entries;
  }
}
