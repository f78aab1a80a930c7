// The sending side of CopyToGuest: entries as request messages, in the original framing
// (start, data..., end) or, for an agent that announced `copy-batch`, whole entries many
// to a `batch` message. Sent only between entries, a batch keeps stream order: whatever
// waits in it goes before the next entry that is not batched.
import { create } from "@bufbuild/protobuf";
import {
  type CopyToGuestBatchEntry,
  CopyToGuestBatchEntrySchema,
  type CopyToGuestRequest,
  CopyToGuestRequestSchema,
  type CopyToGuestStart,
} from "@guestkit/protocol";
import { EntryBatch } from "./entry-batch.js";

const END = create(CopyToGuestRequestSchema, { request: { case: "end", value: {} } });

/** Encodes the entries of one CopyToGuest stream; `send` resolves once the next message may follow. */
export class UploadEncoder {
  readonly #send: (request: CopyToGuestRequest) => Promise<void>;
  readonly #batch: EntryBatch<CopyToGuestBatchEntry> | undefined;

  constructor(send: (request: CopyToGuestRequest) => Promise<void>, batching: boolean) {
    this.#send = send;
    this.#batch = batching ? new EntryBatch() : undefined;
  }

  /** A directory, a symlink, or a file with all of its data (exactly `start.size` bytes). */
  async whole(start: CopyToGuestStart, data: Uint8Array): Promise<void> {
    if (this.#batch === undefined) {
      return await this.streamed(start, async (sendData) => {
        if (data.length > 0) await sendData(data);
      });
    }
    if (this.#batch.isFullFor(data.length)) await this.finish();
    this.#batch.add(create(CopyToGuestBatchEntrySchema, { start, data }), data.length);
  }

  /**
   * A file whose data `read` passes to its callback chunk by chunk. The `end` goes out
   * only once `read` resolves: when it throws (the file changed while it was read), the
   * agent has no `end` and commits nothing of the file.
   */
  async streamed(start: CopyToGuestStart, read: (sendData: (chunk: Uint8Array) => Promise<void>) => Promise<void>) {
    await this.finish();
    await this.#send(create(CopyToGuestRequestSchema, { request: { case: "start", value: start } }));
    await read((chunk) => this.#send(create(CopyToGuestRequestSchema, { request: { case: "data", value: chunk } })));
    await this.#send(END);
  }

  /** Sends the entries waiting in the batch. */
  async finish(): Promise<void> {
    const entries = this.#batch?.take();
    if (entries === undefined) return;
    await this.#send(create(CopyToGuestRequestSchema, { request: { case: "batch", value: { entries } } }));
  }
}
