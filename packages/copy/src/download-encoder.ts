// The sending side of CopyFromGuest: a file, symlink or tree as response messages. The
// agent's handler checks the path and gives every message to its call; the framing below
// is the contract the host's decoder reads.
import { realpath } from "node:fs/promises";
import { posix } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  CHUNK_SIZE,
  type CopyFromGuestBatchEntry,
  CopyFromGuestBatchEntrySchema,
  type CopyFromGuestHeaderSchema,
  type CopyFromGuestResponse,
  CopyFromGuestResponseSchema,
  describeError,
  ErrorCode,
  errorCodeOf,
  SMALL_FILE_BYTES,
} from "@guestkit/protocol";
import { EntryBatch } from "./entry-batch.js";
import { entryMetadata } from "./file-metadata.js";
import { readSource, shrankReason, streamSource } from "./source-file.js";
import { createSyntheticFileCheck, type SyntheticFileCheck } from "./synthetic-files.js";
import { type WalkEntry, walkTree } from "./tree-walk.js";

/** What to send: the CopyFromGuestRequest's fields, `path` already checked to be absolute. */
export interface DownloadRequest {
  path: string;
  followLinks: boolean;
  batch: boolean;
}

type Header = MessageInitShape<typeof CopyFromGuestHeaderSchema>;
type Response = NonNullable<MessageInitShape<typeof CopyFromGuestResponseSchema>["response"]>;

/**
 * Sends `request.path` as CopyFromGuest responses through `send`, which resolves once
 * the message may be followed by the next (the sender reads only as fast as the peer
 * takes messages).
 *
 * For each entry: `header`, then `data` chunks of at most CHUNK_SIZE (files only), then
 * `end`; the last entry's `end` has final=true. Header paths are relative to the copy
 * root and start with the root's base name ("." when the root is "/"). A tree is walked
 * lazily (walkTree), so the first bytes leave before the tree has been looked at; an
 * entry's `end` waits until the next entry is found, because only then is it known
 * whether it is the final one.
 *
 * Symlinks are sent as links (is_symlink, link_target) unless followLinks; then a link
 * is sent as what it points to, a link to a directory as that directory's contents, and
 * a directory met again on its own path is skipped with ELOOP.
 *
 * `skipped` (path, reason, code) reports an entry left out while the rest goes on: a
 * FIFO, socket or device (SPECIAL_FILE; never opened), an entry that cannot be read
 * (EACCES and other errno names), one that vanished (ENOENT) or was replaced (CHANGED)
 * during the walk. The final `end` then has partial=true. A `skipped` can arrive between
 * an entry's data and its `end` (the `end` is waiting for the next entry).
 *
 * A file is sent with exactly the size its header declares: if it grew meanwhile, the
 * rest is not sent; if it shrank, the bytes that were there are sent, then a `skipped`
 * for that same path with code SIZE_MISMATCH, then its `end`. No copy of that file
 * exists: the host must not keep it (it also sees fewer bytes than the header's size).
 * A file whose size, mtime or ctime after the read differ from before it (grown, or
 * written in place) is sent as read, and its `end` has changed=true: the host decides.
 *
 * A synthetic file (procfs, sysfs...; see synthetic-files.ts), whose size says nothing,
 * is read to EOF before its header, which declares what was read; one larger than
 * MAX_SYNTHETIC_FILE_BYTES is skipped (as the root: an `error`) with code EFBIG. Its
 * content is made by the read, so it is never `changed`.
 *
 * With `batch`, directories, symlinks and small files read whole travel as entries of
 * `batch` messages (see EntryBatch) instead of header, data, end. Everything else
 * (larger files, a small file that shrank or changed, `skipped`) keeps the original
 * framing, and the transfer still ends with a final `end`, bare when the last entry came
 * in a batch. Without `batch`, which existing hosts never set, the framing is the
 * original one throughout.
 *
 * A problem with the root itself (missing, unreadable, a special file) is one `error`
 * message (message, path, code), and the transfer is over. Only a failure of `send`
 * rejects.
 */
export async function encodeDownload(
  request: DownloadRequest,
  send: (response: CopyFromGuestResponse) => Promise<void>,
): Promise<void> {
  const out = new DownloadEncoder(send, request.batch);
  const root = tidyPath(request.path);
  const rootError = (code: string, reason: string) => out.error(reason, root, code);
  // The agent runs as root: it checks where each file really is (see WalkPolicy).
  const walk = walkTree(root, { followLinks: request.followLinks, checkLocation: true });
  try {
    let first: WalkEntry;
    try {
      const step = await walk.next();
      if (step.done) return;
      if (step.value.kind === "skipped") return await rootError(step.value.code, `${root}: ${step.value.reason}`);
      first = step.value;
    } catch (error) {
      return await rootError(errorCodeOf(error), describeError(error));
    }
    const rootName = await baseNameOf(root);
    const isSynthetic = createSyntheticFileCheck();
    if (first.stats.isFile()) {
      await sendFile(out, first, rootName, isSynthetic, (code, reason) => rootError(code, `${root}: ${reason}`));
      return await out.finish();
    }
    if (first.stats.isSymbolicLink()) {
      await out.header(headerOf(rootName, first));
      return await out.finish();
    }
    await out.entry(headerOf(rootName, first));
    for await (const item of walk) {
      const path = `${rootName}/${item.relativePath}`;
      if (item.kind === "skipped") await out.skipped(path, item.code, item.reason);
      else if (item.stats.isFile()) {
        await sendFile(out, item, path, isSynthetic, (code, reason) => out.skipped(path, code, reason));
      } else await out.entry(headerOf(path, item));
    }
    await out.finish();
  } finally {
    await walk.return(undefined);
  }
}

/**
 * Sends a regular file: whole (batched when it may be), or its header and its data.
 * `refuse` reports a file that cannot be sent at all (before its header): `skipped` in a
 * tree, `error` for the root.
 */
async function sendFile(
  out: DownloadEncoder,
  entry: WalkEntry,
  path: string,
  isSynthetic: SyntheticFileCheck,
  refuse: (code: string, reason: string) => Promise<void>,
): Promise<void> {
  const source = await readSource(entry, isSynthetic);
  if (source.kind === "refused") return await refuse(source.code, source.reason);
  if (source.kind === "opened") {
    await out.header(headerOf(path, { stats: source.stats, linkTarget: "" }));
    const outcome = await streamSource(source, (chunk) => out.data(chunk));
    if (outcome.kind === "shrank") await out.skipped(path, ErrorCode.SIZE_MISMATCH, shrankReason(outcome));
    else if (outcome.kind === "failed") await out.skipped(path, outcome.code, outcome.reason);
    else if (outcome.changed) out.markChanged();
    return;
  }
  const { data, size, changed } = source;
  const header = headerOf(path, { stats: source.stats, linkTarget: "" }, size);
  const shrank = data.length < size;
  if (!shrank && !changed && data.length <= SMALL_FILE_BYTES) return await out.entry(header, data);
  await out.header(header);
  // The buffer is not touched again, so its chunks can go as views of it.
  for (let offset = 0; offset < data.length; offset += CHUNK_SIZE) {
    await out.data(data.subarray(offset, offset + CHUNK_SIZE));
  }
  if (shrank) await out.skipped(path, ErrorCode.SIZE_MISMATCH, shrankReason({ read: data.length, size }));
  else if (changed) out.markChanged();
}

function headerOf(path: string, entry: Pick<WalkEntry, "stats" | "linkTarget">, size?: bigint): Header {
  return { path, ...entryMetadata(entry.stats, entry.linkTarget, size) };
}

/** The path without repeated or trailing slashes; ".." is left to the kernel, which knows about symlinks. */
function tidyPath(path: string): string {
  const tidy = path.replace(/\/+/g, "/").replace(/\/$/, "");
  return tidy === "" ? "/" : tidy;
}

/** The first element of every header path: the root's own name, never "." or "..". */
async function baseNameOf(root: string): Promise<string> {
  let name = posix.basename(root);
  if (name === "." || name === "..") name = posix.basename(await realpath(root));
  return name === "" ? "." : name;
}

const EMPTY = new Uint8Array(0);

/**
 * Sends the messages of one transfer, keeps track of the one `end` still owed, and packs
 * whole entries into batches when the peer asked for them.
 */
class DownloadEncoder {
  readonly #send: (response: CopyFromGuestResponse) => Promise<void>;
  readonly #batching: boolean;
  #endOwed = false;
  // The entry whose `end` is owed changed while it was read.
  #endChanged = false;
  #partial = false;
  readonly #batch = new EntryBatch<CopyFromGuestBatchEntry>();
  // An entry went out in a batch since the last `end`: the transfer owes a final one.
  #batchedSinceEnd = false;

  constructor(send: (response: CopyFromGuestResponse) => Promise<void>, batching: boolean) {
    this.#send = send;
    this.#batching = batching;
  }

  /**
   * A whole entry: a directory, a symlink, or a file with all of its data. Batched when
   * the peer asked for batches, otherwise header, data, and (with the next entry) end.
   */
  async entry(header: Header, data: Uint8Array = EMPTY): Promise<void> {
    if (!this.#batching) {
      await this.header(header);
      if (data.length > 0) await this.data(data);
      return;
    }
    await this.#sendOwedEnd();
    if (this.#batch.isFullFor(data.length)) await this.#flush();
    this.#batch.add(create(CopyFromGuestBatchEntrySchema, { header, data }), data.length);
    this.#batchedSinceEnd = true;
  }

  /** The root cannot be copied: one `error` message, and the transfer is over. */
  async error(message: string, path: string, code: string): Promise<void> {
    await this.#message({ case: "error", value: { message, path, code } });
  }

  async header(header: Header): Promise<void> {
    await this.#sendOwedEnd();
    this.#endOwed = true;
    await this.#message({ case: "header", value: header });
  }

  /** The file whose header went last changed while it was read: its `end` says so. */
  markChanged(): void {
    this.#endChanged = true;
  }

  async data(bytes: Uint8Array): Promise<void> {
    await this.#message({ case: "data", value: bytes });
  }

  async skipped(path: string, code: string, reason: string): Promise<void> {
    this.#partial = true;
    await this.#message({ case: "skipped", value: { path, code, reason } });
  }

  /** Sends the last entry's `end` with final=true (a bare one when that entry was batched). */
  async finish(): Promise<void> {
    if (!this.#endOwed && !this.#batchedSinceEnd) return;
    const changed = this.#endOwed && this.#endChanged;
    this.#endOwed = false;
    this.#endChanged = false;
    await this.#message({ case: "end", value: { final: true, partial: this.#partial, changed } });
  }

  // Another entry follows, so the previous one was not the final one.
  async #sendOwedEnd(): Promise<void> {
    if (!this.#endOwed) return;
    const changed = this.#endChanged;
    this.#endOwed = false;
    this.#endChanged = false;
    await this.#message({ case: "end", value: { final: false, changed } });
  }

  // Every other message goes after the entries waiting in the batch, keeping stream order.
  async #message(response: Response): Promise<void> {
    await this.#flush();
    if (response.case === "end") this.#batchedSinceEnd = false;
    await this.#send(create(CopyFromGuestResponseSchema, { response }));
  }

  async #flush(): Promise<void> {
    const entries = this.#batch.take();
    if (entries === undefined) return;
    await this.#send(create(CopyFromGuestResponseSchema, { response: { case: "batch", value: { entries } } }));
  }
}
