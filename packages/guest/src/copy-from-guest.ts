// CopyFromGuest: streams a file, symlink or whole tree out of the guest.
import type { BigIntStats } from "node:fs";
import { lstat, opendir, readlink, realpath, stat } from "node:fs/promises";
import { posix } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  allocateBulkData,
  CHUNK_SIZE,
  type CopyFromGuestBatchEntry,
  CopyFromGuestBatchEntrySchema,
  type CopyFromGuestHeaderSchema,
  type CopyFromGuestRequest,
  type CopyFromGuestResponse,
  CopyFromGuestResponseSchema,
  createSyntheticFileCheck,
  ErrorCode,
  errorCodeOf,
  type GuestServiceHandlers,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  readWholeFile,
  SMALL_FILE_BYTES,
} from "@guestkit/protocol";
import { permissionBits, specialFileKind, splitNanoseconds } from "./file-metadata.js";
import { describeError, grpcErrorFrom } from "./grpc-errors.js";
import { checkGuestPath } from "./guest-path.js";
import { logError } from "./log.js";
import {
  changedWhileRead,
  type OpenSourceOptions,
  openSourceFile,
  readSmallSourceFile,
  type SourceFile,
} from "./source-file.js";
import { CallClosedError, writeMessage } from "./stream-writer.js";
import { walkTree } from "./tree-walk.js";

/**
 * The CopyFromGuest handler.
 *
 * For each entry: `header`, then `data` chunks of at most CHUNK_SIZE (files only), then
 * `end`; the last entry's `end` has final=true. Header paths are relative to the copy
 * root and start with the root's base name ("." when the root is "/"). A tree is walked
 * lazily, depth-first, each directory before its contents, so the first bytes leave
 * before the tree has been looked at; an entry's `end` waits until the next entry is
 * found, because only then is it known whether it is the final one. The agent reads
 * only as fast as the client takes messages.
 *
 * Symlinks are sent as links (is_symlink, link_target) unless follow_links; then a link
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
 * A synthetic file (procfs, sysfs...; see the protocol package's synthetic-files.ts),
 * whose size says nothing, is read to EOF before its header, which declares what was
 * read; one larger than MAX_SYNTHETIC_FILE_BYTES is skipped (as the root: an `error`)
 * with code EFBIG. Its content is made by the read, so it is never `changed`.
 *
 * When the request sets `batch`, directories, symlinks and small files read whole travel
 * as entries of `batch` messages (at most MAX_BATCH_ENTRIES entries and MAX_BATCH_BYTES
 * of data each) instead of header, data, end: one message through gRPC's per-message
 * machinery instead of three. Everything else (larger files, a small file that shrank
 * or changed, `skipped`) keeps the original framing, and the transfer still ends with a
 * final `end`, bare when the last entry came in a batch. Without `batch`, which existing
 * hosts never set, the framing is the original one throughout.
 *
 * A problem with the root itself (bad path, missing, unreadable, a special file) is one
 * `error` message (message, path, code) and a normal end of the call, as existing hosts
 * expect. Only a failure of the agent itself ends the call with a gRPC status.
 */
export const handleCopyFromGuest: GuestServiceHandlers["copyFromGuest"] = (call) => {
  sendCopy(call).then(
    () => call.end(),
    (error: unknown) => {
      if (error instanceof CallClosedError) return;
      logError(`CopyFromGuest: ${describeError(error)}`);
      call.emit("error", grpcErrorFrom(error, "CopyFromGuest"));
    },
  );
};

type CopyFromGuestCall = grpc.ServerWritableStream<CopyFromGuestRequest, CopyFromGuestResponse>;
type Header = MessageInitShape<typeof CopyFromGuestHeaderSchema>;

async function sendCopy(call: CopyFromGuestCall): Promise<void> {
  const out = new TransferWriter(call, call.request.batch);
  const { followLinks } = call.request;
  const problem = checkGuestPath(call.request.path);
  if (problem) return out.error(problem, call.request.path, "EINVAL");
  const root = tidyPath(call.request.path);
  let stats: BigIntStats;
  try {
    stats = followLinks ? await stat(root, { bigint: true }) : await lstat(root, { bigint: true });
  } catch (error) {
    return out.error(describeError(error), root, errorCodeOf(error));
  }
  const rootName = await baseNameOf(root);
  // Where each file really is, to notice a directory swapped for a symlink mid-walk.
  const realRoot = followLinks ? undefined : await realpath(root).catch(() => undefined);
  const isSynthetic = createSyntheticFileCheck();
  const sourceOptions = (path: string): OpenSourceOptions =>
    realRoot === undefined
      ? { followLinks, isSynthetic }
      : {
          followLinks,
          isSynthetic,
          realPath: realRoot.replace(/\/$/, "") + path.slice(root === "/" ? 0 : root.length),
        };

  const special = specialFileKind(stats);
  if (special) return out.error(`${root} is a ${special}, which is never opened`, root, ErrorCode.SPECIAL_FILE);
  if (stats.isSymbolicLink()) {
    let target: string;
    try {
      target = await readlink(root);
    } catch (error) {
      return out.error(describeError(error), root, errorCodeOf(error));
    }
    await out.header(headerOf(rootName, stats, target));
    return out.finish();
  }
  if (stats.isFile()) {
    await sendRegularFile(out, root, rootName, stats, sourceOptions(root), (code, reason) =>
      out.error(`${root}: ${reason}`, root, code),
    );
    return out.finish();
  }

  let dir: Awaited<ReturnType<typeof opendir>>;
  try {
    dir = await opendir(root);
  } catch (error) {
    return out.error(describeError(error), root, errorCodeOf(error));
  }
  try {
    await out.entry(headerOf(rootName, stats, ""));
  } catch (error) {
    // The walk, which closes it, has not started.
    await dir.close().catch(() => undefined);
    throw error;
  }
  let turnStarted = performance.now();
  for await (const item of walkTree({ path: root, relativePath: rootName, dir, stats }, { followLinks })) {
    if (item.kind === "skipped") {
      await out.skipped(item.relativePath, item.code, item.reason);
    } else if (item.stats.isFile()) {
      await sendRegularFile(out, item.path, item.relativePath, item.stats, sourceOptions(item.path), (code, reason) =>
        out.skipped(item.relativePath, code, reason),
      );
    } else {
      await out.entry(headerOf(item.relativePath, item.stats, item.linkTarget));
    }
    // The walk and small files are synchronous and the call rarely pushes back, so
    // without this a large tree would hold the event loop (other calls) for seconds.
    if (performance.now() - turnStarted > MAX_TURN_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      turnStarted = performance.now();
    }
  }
  await out.finish();
}

// How long the walk may run before it lets other work on the event loop in.
const MAX_TURN_MS = 10;

/**
 * Sends a regular file: a small one read whole at once, a synthetic one read to EOF
 * first, others streamed. `refuse` reports a file that cannot be sent at all (before its
 * header): `skipped` in a tree, `error` for the root.
 */
async function sendRegularFile(
  out: TransferWriter,
  path: string,
  relativePath: string,
  seen: BigIntStats,
  options: OpenSourceOptions,
  refuse: (code: string, reason: string) => Promise<void>,
): Promise<void> {
  if (seen.size <= SMALL_FILE_BYTES) {
    const small = readSmallSourceFile(path, seen, options);
    if (small.kind === "refused") return await refuse(small.code, small.reason);
    if (small.kind === "read") {
      const header = headerOf(relativePath, small.stats, "");
      if (small.data.length === Number(small.stats.size) && !small.changed) return await out.entry(header, small.data);
      await out.header(header);
      if (small.data.length > 0) await out.data(small.data);
      if (small.data.length < small.stats.size) {
        await out.skipped(
          relativePath,
          ErrorCode.SIZE_MISMATCH,
          `the file shrank to ${small.data.length} of ${small.stats.size} bytes while it was read`,
        );
      } else {
        out.markChanged();
      }
      return;
    }
  }
  const source = await openSourceFile(path, seen, options);
  if (source.kind === "refused") return await refuse(source.code, source.reason);
  if (source.synthetic) await sendSyntheticFile(out, relativePath, source, refuse);
  else await sendFile(out, relativePath, source);
}

/** Sends one opened file: header and exactly the declared number of bytes, or a `skipped` saying why not. */
async function sendFile(out: TransferWriter, relativePath: string, source: SourceFile & { kind: "opened" }) {
  const { handle, stats } = source;
  try {
    await out.header(headerOf(relativePath, stats, ""));
    const size = Number(stats.size);
    let offset = 0;
    while (offset < size) {
      const length = Math.min(CHUNK_SIZE, size - offset);
      // A fresh buffer per chunk: a message can wait in the call's buffer after write()
      // returns. allocateBulkData's lets the message be encoded without a copy.
      const buffer = allocateBulkData(length);
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(buffer, 0, length, offset));
      } catch (error) {
        const reason = `reading failed after ${offset} of ${size} bytes: ${describeError(error)}`;
        return await out.skipped(relativePath, errorCodeOf(error), reason);
      }
      if (bytesRead === 0) {
        return await out.skipped(
          relativePath,
          ErrorCode.SIZE_MISMATCH,
          `the file shrank to ${offset} of ${size} bytes while it was read`,
        );
      }
      await out.data(bytesRead === length ? buffer : buffer.subarray(0, bytesRead));
      offset += bytesRead;
    }
    let after: BigIntStats;
    try {
      after = await handle.stat({ bigint: true });
    } catch (error) {
      return await out.skipped(relativePath, errorCodeOf(error), `cannot examine it: ${describeError(error)}`);
    }
    if (changedWhileRead(stats, after)) out.markChanged();
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * Sends a synthetic file: read to EOF (at most MAX_SYNTHETIC_FILE_BYTES) before its
 * header, which declares what was read. Never `changed`: its stat says nothing about a
 * content the kernel makes afresh for each read.
 */
async function sendSyntheticFile(
  out: TransferWriter,
  relativePath: string,
  source: SourceFile & { kind: "opened" },
  refuse: (code: string, reason: string) => Promise<void>,
): Promise<void> {
  const { handle, stats } = source;
  let whole: Awaited<ReturnType<typeof readWholeFile>>;
  try {
    whole = await readWholeFile(handle);
  } catch (error) {
    return await refuse(errorCodeOf(error), `reading failed: ${describeError(error)}`);
  } finally {
    await handle.close().catch(() => undefined);
  }
  if (whole.kind === "too-large") {
    return await refuse(
      "EFBIG",
      `a file of a synthetic file system (procfs, sysfs...) that holds more than ${whole.limit} bytes is not copied`,
    );
  }
  const { data } = whole;
  const header = headerOf(relativePath, stats, "", BigInt(data.length));
  if (data.length <= SMALL_FILE_BYTES) return await out.entry(header, data);
  await out.header(header);
  // The buffer is not touched again, so its chunks can go as views of it.
  for (let offset = 0; offset < data.length; offset += CHUNK_SIZE) {
    await out.data(data.subarray(offset, offset + CHUNK_SIZE));
  }
}

/** The header of an entry; `size` overrides a file's stat size (a synthetic file's is what was read). */
function headerOf(relativePath: string, stats: BigIntStats, linkTarget: string, size?: bigint): Header {
  const mtime = splitNanoseconds(stats.mtimeNs);
  return {
    path: relativePath,
    mode: permissionBits(stats.mode),
    isDir: stats.isDirectory(),
    isSymlink: stats.isSymbolicLink(),
    linkTarget,
    size: stats.isFile() ? (size ?? stats.size) : 0n,
    mtime: mtime.seconds,
    mtimeNanos: mtime.nanos,
    uid: Number(stats.uid),
    gid: Number(stats.gid),
  };
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
 * whole entries into batches when the client asked for them.
 */
class TransferWriter {
  readonly #call: CopyFromGuestCall;
  readonly #batching: boolean;
  #endOwed = false;
  // The entry whose `end` is owed changed while it was read.
  #endChanged = false;
  #partial = false;
  #batch: CopyFromGuestBatchEntry[] = [];
  #batchBytes = 0;
  // An entry went out in a batch since the last `end`: the transfer owes a final one.
  #batchedSinceEnd = false;

  constructor(call: CopyFromGuestCall, batching: boolean) {
    this.#call = call;
    this.#batching = batching;
  }

  /**
   * A whole entry: a directory, a symlink, or a file with all of its data. Batched when
   * the client asked for batches, otherwise header, data, and (with the next entry) end.
   */
  async entry(header: Header, data: Uint8Array = EMPTY): Promise<void> {
    if (!this.#batching) {
      await this.header(header);
      if (data.length > 0) await this.data(data);
      return;
    }
    await this.#sendOwedEnd();
    if (this.#batch.length >= MAX_BATCH_ENTRIES || this.#batchBytes + data.length > MAX_BATCH_BYTES) {
      await this.#flush();
    }
    this.#batch.push(create(CopyFromGuestBatchEntrySchema, { header, data }));
    this.#batchBytes += data.length;
    this.#batchedSinceEnd = true;
  }

  /** The root cannot be copied: one `error` message, and the transfer is over. */
  async error(message: string, path: string, code: string): Promise<void> {
    await this.#send({ case: "error", value: { message, path, code } });
  }

  async header(header: Header): Promise<void> {
    await this.#sendOwedEnd();
    this.#endOwed = true;
    await this.#send({ case: "header", value: header });
  }

  /** The file whose header went last changed while it was read: its `end` says so. */
  markChanged(): void {
    this.#endChanged = true;
  }

  async data(bytes: Uint8Array): Promise<void> {
    await this.#send({ case: "data", value: bytes });
  }

  async skipped(path: string, code: string, reason: string): Promise<void> {
    this.#partial = true;
    await this.#send({ case: "skipped", value: { path, code, reason } });
  }

  /** Sends the last entry's `end` with final=true (a bare one when that entry was batched). */
  async finish(): Promise<void> {
    if (!this.#endOwed && !this.#batchedSinceEnd) return;
    const changed = this.#endOwed && this.#endChanged;
    this.#endOwed = false;
    this.#endChanged = false;
    await this.#send({ case: "end", value: { final: true, partial: this.#partial, changed } });
  }

  // Another entry follows, so the previous one was not the final one.
  async #sendOwedEnd(): Promise<void> {
    if (!this.#endOwed) return;
    const changed = this.#endChanged;
    this.#endOwed = false;
    this.#endChanged = false;
    await this.#send({ case: "end", value: { final: false, changed } });
  }

  // Every other message goes after the entries waiting in the batch, keeping stream order.
  async #send(response: NonNullable<MessageInitShape<typeof CopyFromGuestResponseSchema>["response"]>): Promise<void> {
    await this.#flush();
    if (response.case === "end") this.#batchedSinceEnd = false;
    await writeMessage(this.#call, create(CopyFromGuestResponseSchema, { response }));
  }

  async #flush(): Promise<void> {
    if (this.#batch.length === 0) return;
    const entries = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    await writeMessage(
      this.#call,
      create(CopyFromGuestResponseSchema, { response: { case: "batch", value: { entries } } }),
    );
  }
}
