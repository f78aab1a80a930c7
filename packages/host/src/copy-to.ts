// Upload: a local file or tree into the guest, over one CopyToGuest stream.
//
// The whole tree travels in one stream, entry after entry (start, data..., end), which
// guestkit's agent accepts; a single file is one entry, which is also what the original
// agent expects. Files are read CHUNK_SIZE at a time and the next chunk is read only
// when the call accepts more, so memory stays flat whatever the size.
//
// Once the agent has announced batches (COPY_BATCH_METADATA_KEY in its response
// headers, sent as the call starts), small files, directories and symlinks travel
// whole, many to a `batch` message: one message instead of three through gRPC's
// per-message machinery on both sides, which is most of a small file's cost. Until the
// header arrives, and always against an agent that never sends it, every entry goes in
// the original framing.
import type { BigIntStats } from "node:fs";
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { basename, posix, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  allocateBulkData,
  CHUNK_SIZE,
  COPY_BATCH_METADATA_KEY,
  COPY_BATCH_METADATA_VALUE,
  type CopyToGuestBatchEntry,
  CopyToGuestBatchEntrySchema,
  type CopyToGuestRequest,
  CopyToGuestRequestSchema,
  type CopyToGuestResponse,
  type CopyToGuestStart,
  CopyToGuestStartSchema,
  type GuestServiceClient,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  SMALL_FILE_BYTES,
} from "@guestkit/protocol";
import { abortedError, callError, statGuestPath } from "./copy-call.js";
import { type Placement, parseDestination, parseSource, placeCopy } from "./copy-destination.js";
import { CopyError } from "./copy-error.js";
import { type LocalEntry, walkLocalTree } from "./copy-local-walk.js";
import { type CopyOptions, type CopyResult, notifyProgress, SkippedList } from "./copy-types.js";
import { describeLocalError, errnoOf, errnoText } from "./guest-error.js";
import { sanitizeMode } from "./path-safety.js";

/** Options of copyTo. */
export type CopyToOptions = CopyOptions;

// How much of each text the guest sends back in a failure is kept, as copyFrom does: the
// guest is not trusted to keep them short.
const MAX_GUEST_MESSAGE = 1000;
const MAX_GUEST_PATH = 4096;
const MAX_GUEST_CODE = 100;

// How long the upload loop may run before it lets other work on the event loop in.
const MAX_TURN_MS = 10;

/**
 * Copies `localPath` (a file, a symlink, or a whole tree) to `guestPath` in the guest,
 * with the `docker cp` destination rules (see placeCopy). `guestPath` must be absolute.
 * Special files (FIFOs, sockets, devices) and unreadable entries inside a tree are
 * skipped and listed in the result, which is then `partial`. Each guest file is
 * committed atomically by the agent; on failure or abort, entries already committed
 * stay and the error says how many there were.
 */
export async function copyTo(
  client: GuestServiceClient,
  localPath: string,
  guestPath: string,
  options: CopyToOptions = {},
): Promise<CopyResult> {
  const { signal, metadata } = options;
  if (signal?.aborted) throw abortedError(signal);
  const source = parseSource(localPath);
  const destination = parseDestination(guestPath);
  if (!destination.path.startsWith("/")) {
    throw new CopyError("DESTINATION", `the guest path must be absolute: ${guestPath}`, { path: guestPath });
  }
  const followLinks = options.followLinks ?? false;
  const absSource = resolve(source.path);
  const walk = walkLocalTree(absSource, { followLinks, followRoot: source.mustBeDir });
  let first: LocalEntry;
  try {
    const step = await walk.next();
    first = step.value as LocalEntry;
  } catch (error) {
    throw new CopyError("SOURCE", `cannot read ${localPath}: ${describeLocalError(error)}`, {
      path: localPath,
      ...errnoDetail(error),
      cause: error,
    });
  }
  try {
    if (first.kind === "skipped") {
      throw new CopyError("SOURCE", `cannot copy ${localPath}: ${first.reason}`, {
        path: localPath,
        errno: first.code,
      });
    }
    const destState = await statGuestPath(client, destination.path, true, metadata, signal);
    if (destState.error !== "") {
      throw new CopyError(
        "DESTINATION",
        `cannot examine guest:${destination.path}: ${errnoText(destState.errorCode) ?? destState.error.slice(0, MAX_GUEST_MESSAGE)}`,
        { path: destination.path, guestCode: destState.errorCode.slice(0, MAX_GUEST_CODE) },
      );
    }
    const placement = placeCopy(source, first.kind === "dir", basename(absSource), destination, destState);
    if (placement.createsDestination) {
      const parent = posix.dirname(placement.target);
      const parentState = await statGuestPath(client, parent, true, metadata, signal);
      if (!parentState.exists || !parentState.isDir) {
        throw new CopyError("DESTINATION", `guest directory ${parent} does not exist`, { path: parent });
      }
    }
    return await upload(client, first, walk, placement, basename(absSource), options);
  } finally {
    await walk.return(undefined);
  }
}

async function upload(
  client: GuestServiceClient,
  first: LocalEntry,
  rest: AsyncGenerator<LocalEntry>,
  placement: Placement,
  rootName: string,
  options: CopyToOptions,
): Promise<CopyResult> {
  const { signal } = options;
  const { target, mergeIntoExisting: skipRoot } = placement;
  // Paths in progress, skips and errors name the root as CopyFromGuest headers do: "root/dir/file".
  const displayPath = (entry: LocalEntry) => (entry.relPath === "" ? rootName : `${rootName}/${entry.relPath}`);
  const skipped = new SkippedList();
  let bytes = 0;
  let entries = 0;
  let currentPath = "";
  let call: grpc.ClientWritableStream<CopyToGuestRequest> | undefined;
  const response = new Promise<CopyToGuestResponse>((resolve, reject) => {
    call = client.copyToGuest(options.metadata ?? new grpc.Metadata(), {}, (error, value) => {
      if (error) reject(error);
      else if (value) resolve(value);
      else reject(new Error("no response"));
    });
  });
  const stream = call as grpc.ClientWritableStream<CopyToGuestRequest>;
  // Settles when the guest answers, which it may do early (a failure mid-stream).
  let answered = false;
  const answer = response.then(
    () => {
      answered = true;
    },
    () => {
      answered = true;
    },
  );
  const onAbort = () => stream.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  let batching = false;
  stream.once("metadata", (headers: grpc.Metadata) => {
    batching = headers.get(COPY_BATCH_METADATA_KEY)[0] === COPY_BATCH_METADATA_VALUE;
  });
  let batch: CopyToGuestBatchEntry[] = [];
  let batchBytes = 0;
  const progress = () => notifyProgress(options, { bytes, entries, path: currentPath });

  const send = async (message: CopyToGuestRequest): Promise<void> => {
    if (answered) throw new EarlyAnswer();
    if (stream.write(message)) return;
    await new Promise<void>((resolveDrain) => {
      const done = () => {
        stream.off("drain", done);
        resolveDrain();
      };
      stream.on("drain", done);
      void answer.then(done);
    });
    if (answered) throw new EarlyAnswer();
  };

  const flushBatch = async (): Promise<void> => {
    if (batch.length === 0) return;
    const entries = batch;
    batch = [];
    batchBytes = 0;
    await send(create(CopyToGuestRequestSchema, { request: { case: "batch", value: { entries } } }));
  };

  // Entries take effect in stream order: whatever waits in the batch goes first.
  const sendInOrder = async (message: CopyToGuestRequest): Promise<void> => {
    await flushBatch();
    await send(message);
  };

  const addToBatch = async (start: CopyToGuestStart, data: Uint8Array): Promise<void> => {
    if (batch.length >= MAX_BATCH_ENTRIES || batchBytes + data.length > MAX_BATCH_BYTES) await flushBatch();
    batch.push(create(CopyToGuestBatchEntrySchema, { start, data }));
    batchBytes += data.length;
  };

  const endMessage = create(CopyToGuestRequestSchema, { request: { case: "end", value: {} } });

  const sendEntry = async (entry: LocalEntry): Promise<void> => {
    if (entry.kind === "skipped") {
      skipped.add({ path: displayPath(entry), reason: entry.reason, code: entry.code });
      return;
    }
    if (skipRoot && entry.relPath === "") return;
    const guestPath = entry.relPath === "" ? target : `${target}/${entry.relPath}`;
    currentPath = displayPath(entry);
    if (entry.kind === "file" && entry.stats.size <= SMALL_FILE_BYTES) {
      const file = readSmallSource(entry, options.followLinks === true || entry.relPath === "");
      if ("skip" in file) {
        if (entry.relPath === "") throw new CopyError("SOURCE", `cannot copy ${entry.absPath}: ${file.skip.reason}`);
        skipped.add({ path: currentPath, ...file.skip });
        return;
      }
      if ("data" in file) {
        if (file.data.length < file.stats.size) {
          throw new CopyError("SOURCE", `${entry.absPath} shrank while it was being copied`, {
            path: currentPath,
            entriesCompleted: entries,
            bytesCompleted: bytes,
          });
        }
        const start = startOf(guestPath, file.stats, false, "", options);
        if (batching) {
          await addToBatch(start, file.data);
        } else {
          await sendInOrder(startRequest(start));
          if (file.data.length > 0) {
            await send(create(CopyToGuestRequestSchema, { request: { case: "data", value: file.data } }));
          }
          await send(endMessage);
        }
        bytes += file.data.length;
        entries += 1;
        progress();
        return;
      }
    }
    if (entry.kind === "file") {
      const file = await openSource(entry, options.followLinks === true || entry.relPath === "");
      if ("skip" in file) {
        if (entry.relPath === "") throw new CopyError("SOURCE", `cannot copy ${entry.absPath}: ${file.skip.reason}`);
        skipped.add({ path: currentPath, ...file.skip });
        return;
      }
      try {
        await sendInOrder(startRequest(startOf(guestPath, file.stats, false, "", options)));
        let remaining = file.stats.size;
        while (remaining > 0n) {
          const length = Number(remaining < BigInt(CHUNK_SIZE) ? remaining : BigInt(CHUNK_SIZE));
          // A fresh buffer per chunk: the message may still be queued when the next read
          // happens. allocateBulkData's lets the message be encoded without a copy.
          const chunk = allocateBulkData(length);
          const { bytesRead } = await file.handle.read(chunk, 0, length, null);
          if (bytesRead === 0) {
            throw new CopyError("SOURCE", `${entry.absPath} shrank while it was being copied`, {
              path: currentPath,
              entriesCompleted: entries,
              bytesCompleted: bytes,
            });
          }
          if (signal?.aborted) throw abortedError(signal);
          await send(
            create(CopyToGuestRequestSchema, { request: { case: "data", value: chunk.subarray(0, bytesRead) } }),
          );
          remaining -= BigInt(bytesRead);
          bytes += bytesRead;
          progress();
        }
      } finally {
        await file.handle.close();
      }
      await send(endMessage);
    } else {
      const isSymlink = entry.kind === "symlink";
      const start = startOf(guestPath, entry.stats, isSymlink, isSymlink ? entry.linkTarget : "", options);
      if (batching) {
        await addToBatch(start, EMPTY);
      } else {
        await sendInOrder(startRequest(start));
        await send(endMessage);
      }
    }
    entries += 1;
    progress();
  };

  let result: CopyToGuestResponse;
  let cutShort = false;
  try {
    try {
      await sendEntry(first);
      let turnStarted = performance.now();
      for await (const entry of rest) {
        if (signal?.aborted) throw abortedError(signal);
        await sendEntry(entry);
        // Small files are read synchronously and the stream rarely pushes back, so
        // without this a large tree could hold the caller's event loop for seconds.
        if (performance.now() - turnStarted > MAX_TURN_MS) {
          await new Promise((resolveTurn) => setImmediate(resolveTurn));
          turnStarted = performance.now();
        }
      }
      await flushBatch();
      stream.end();
    } catch (error) {
      // The guest's own answer (a failure it reported) explains an early end better.
      cutShort = true;
      if (!(error instanceof EarlyAnswer)) {
        stream.cancel();
        await answer;
        if (signal?.aborted) throw abortedError(signal, { entriesCompleted: entries, bytesCompleted: bytes });
        throw error instanceof CopyError
          ? error
          : new CopyError("LOCAL_IO", `cannot read ${currentPath}: ${describeLocalError(error)}`, {
              path: currentPath,
              ...errnoDetail(error),
              entriesCompleted: entries,
              bytesCompleted: bytes,
              cause: error,
            });
      }
    }
    try {
      result = await response;
    } catch (error) {
      if (signal?.aborted) throw abortedError(signal, { entriesCompleted: entries, bytesCompleted: bytes });
      throw callError(error, "CopyToGuest", { entriesCompleted: entries, bytesCompleted: bytes });
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (result.success && cutShort) {
    throw new CopyError("PROTOCOL", "the guest reported success before the upload was complete", {
      entriesCompleted: Number(result.entriesWritten),
      bytesCompleted: Number(result.bytesWritten),
    });
  }
  if (!result.success) {
    const errorPath = result.errorPath.slice(0, MAX_GUEST_PATH);
    const guestCode = result.errorCode.slice(0, MAX_GUEST_CODE);
    const committed = Number(result.entriesWritten);
    // An errno in the system's words with the path; other failures as the guest said them.
    const known = errnoText(guestCode);
    const what =
      known !== undefined
        ? `cannot copy to guest:${errorPath || target}: ${known}`
        : `guest: ${result.error.slice(0, MAX_GUEST_MESSAGE) || "copy failed"}${errorPath ? ` (${errorPath})` : ""}`;
    throw new CopyError("GUEST", `${what}; ${committed} entries were committed before the failure`, {
      path: errorPath,
      guestCode,
      entriesCompleted: committed,
      bytesCompleted: Number(result.bytesWritten),
    });
  }
  return { bytes, entries, skipped: skipped.listed, skippedCount: skipped.count, partial: skipped.count > 0 };
}

/** Thrown inside the send loop when the guest answered before the upload was over. */
class EarlyAnswer extends Error {}

const EMPTY = new Uint8Array(0);

function startRequest(start: CopyToGuestStart): CopyToGuestRequest {
  return create(CopyToGuestRequestSchema, { request: { case: "start", value: start } });
}

function startOf(
  path: string,
  stats: BigIntStats,
  isSymlink: boolean,
  linkTarget: string,
  options: CopyToOptions,
): CopyToGuestStart {
  // Floor division, so times before 1970 still get nanos in 0..999999999.
  let seconds = stats.mtimeNs / 1_000_000_000n;
  let nanos = stats.mtimeNs % 1_000_000_000n;
  if (nanos < 0n) {
    nanos += 1_000_000_000n;
    seconds -= 1n;
  }
  const own = options.preserveOwnership === true;
  return create(CopyToGuestStartSchema, {
    path,
    mode: isSymlink ? 0 : sanitizeMode(Number(stats.mode), options.keepSetuid === true),
    isDir: stats.isDirectory(),
    size: stats.isFile() ? stats.size : 0n,
    mtime: seconds,
    mtimeNanos: Number(nanos),
    uid: own ? Number(stats.uid) : 0,
    gid: own ? Number(stats.gid) : 0,
    chown: own,
    isSymlink,
    linkTarget,
  });
}

type OpenedSource = { handle: FileHandle; stats: BigIntStats } | { skip: { reason: string; code: string } };

/**
 * Opens a file the walk found. O_NONBLOCK keeps a file swapped for a FIFO since the walk
 * from hanging the open; the fstat afterwards checks that it is still a regular file.
 */
async function openSource(entry: LocalEntry, follow: boolean): Promise<OpenedSource> {
  const flags = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | (follow ? 0 : fsConstants.O_NOFOLLOW);
  let handle: FileHandle;
  try {
    handle = await open(entry.absPath, flags);
  } catch (error) {
    return { skip: { reason: describeLocalError(error), code: errnoOf(error) || "UNKNOWN" } };
  }
  const stats = await handle.stat({ bigint: true });
  if (!stats.isFile()) {
    await handle.close();
    return { skip: { reason: "no longer a regular file", code: "SPECIAL_FILE" } };
  }
  return { handle, stats };
}

/**
 * openSource for a small file, synchronously, reading it whole. `{ large }` when the file
 * grew past SMALL_FILE_BYTES since the walk: it is then streamed as any large file.
 */
function readSmallSource(
  entry: LocalEntry,
  follow: boolean,
): { stats: BigIntStats; data: Buffer } | { large: true } | { skip: { reason: string; code: string } } {
  const flags = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | (follow ? 0 : fsConstants.O_NOFOLLOW);
  let fd: number;
  try {
    fd = openSync(entry.absPath, flags);
  } catch (error) {
    return { skip: { reason: describeLocalError(error), code: errnoOf(error) || "UNKNOWN" } };
  }
  try {
    const stats = fstatSync(fd, { bigint: true });
    if (!stats.isFile()) return { skip: { reason: "no longer a regular file", code: "SPECIAL_FILE" } };
    if (stats.size > SMALL_FILE_BYTES) return { large: true };
    const data = Buffer.allocUnsafe(Number(stats.size));
    let offset = 0;
    while (offset < data.length) {
      const read = readSync(fd, data, offset, data.length - offset, null);
      if (read === 0) break;
      offset += read;
    }
    return { stats, data: data.subarray(0, offset) };
  } finally {
    closeSync(fd);
  }
}

function errnoDetail(error: unknown): { errno?: string } {
  const errno = errnoOf(error);
  return errno === "" ? {} : { errno };
}
