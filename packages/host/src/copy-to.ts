// Upload: a local file or tree into the guest.
//
// How entries travel depends on what the agent announced (capabilities.ts):
// - `copy-multi-entry` (guestkit's agent): the whole tree in one CopyToGuest stream,
//   entry after entry (start, data..., end). With `copy-batch` too, small files,
//   directories and symlinks travel whole, many to a `batch` message: one message
//   instead of three through gRPC's per-message machinery on both sides, which is most
//   of a small file's cost. The answer must count every entry sent (entries_written).
// - otherwise (the existing Go agent takes exactly ONE entry per stream, answers success
//   after the first `end` and silently drops whatever follows): one stream per entry,
//   a few at a time so trees stay fast, each answer checked on its own (success, and
//   bytes_written equal to the file's size). A directory's stream is answered before any
//   entry inside it is sent, since such an agent may not create parents. Symlinks cannot
//   be expressed in the original fields: they are skipped and listed.
// Files are read CHUNK_SIZE at a time and the next chunk is read only when the call
// accepts more, so memory stays flat whatever the size.
import type { BigIntStats } from "node:fs";
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { basename, posix, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  allocateBulkData,
  Capability,
  CHUNK_SIZE,
  type CopyToGuestBatchEntry,
  CopyToGuestBatchEntrySchema,
  type CopyToGuestRequest,
  CopyToGuestRequestSchema,
  type CopyToGuestResponse,
  type CopyToGuestStart,
  CopyToGuestStartSchema,
  createSyntheticFileCheck,
  cutText,
  ErrorCode,
  errnoOf,
  errorCodeOf,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  MAX_GUEST_CODE,
  MAX_GUEST_MESSAGE,
  MAX_GUEST_PATH,
  readWholeFile,
  SMALL_FILE_BYTES,
  type SyntheticFileCheck,
} from "@guestkit/protocol";
import { abortedError, callError, statGuestPath } from "./copy-call.js";
import { type Placement, parseDestination, parseSource, placeCopy } from "./copy-destination.js";
import { CopyError } from "./copy-error.js";
import { type LocalEntry, walkLocalTree } from "./copy-local-walk.js";
import {
  ACCEPT_HINT,
  type CopyOptions,
  type CopyResult,
  callMetadata,
  EntryList,
  notifyProgress,
  type SkippedEntry,
} from "./copy-types.js";
import type { GuestChannel } from "./guest-connection.js";
import { describeLocalError, errnoText } from "./guest-error.js";
import { sanitizeMode } from "./path-safety.js";

/** Options of copyTo. */
export type CopyToOptions = CopyOptions;

// How long the upload loop may run before it lets other work on the event loop in.
const MAX_TURN_MS = 10;

// Streams in flight at once against an agent that takes one entry per stream: enough to
// hide the round trip of each answer, few enough that a failure stops the rest quickly.
const STREAMS_PER_ENTRY_IN_FLIGHT = 8;

/**
 * Copies `localPath` (a file, a symlink, or a whole tree) to `guestPath` in the guest,
 * with the `docker cp` destination rules (see placeCopy). `guestPath` must be absolute.
 * Special files (FIFOs, sockets, devices) and unreadable entries inside a tree are
 * skipped and listed in the result, which is then `partial`. A file that shrinks while
 * it is read, or changes otherwise (see `acceptChangingFiles`), fails the copy with
 * source-changed before its `end` is sent, so the agent commits nothing of it. Files of
 * procfs, sysfs and the like are read whole and sent with what they hold. Each guest file
 * is committed atomically by the agent; on failure or abort, entries already committed
 * stay and the error says how many there were.
 */
export async function copyTo(
  channel: GuestChannel,
  localPath: string,
  guestPath: string,
  options: CopyToOptions = {},
): Promise<CopyResult> {
  const { signal } = options;
  const client = channel.guest;
  const metadata = callMetadata(channel, options.metadata);
  if (signal?.aborted) throw abortedError(signal);
  const source = parseSource(localPath);
  const destination = parseDestination(guestPath);
  if (!destination.path.startsWith("/")) {
    throw new CopyError("destination", `the guest path must be absolute: ${guestPath}`, { path: guestPath });
  }
  const followLinks = options.followLinks ?? false;
  const absSource = resolve(source.path);
  const walk = walkLocalTree(absSource, { followLinks, followRoot: source.mustBeDir });
  let first: LocalEntry;
  try {
    const step = await walk.next();
    first = step.value as LocalEntry;
  } catch (error) {
    throw new CopyError("source", `cannot read ${localPath}: ${describeLocalError(error)}`, {
      path: localPath,
      ...errnoDetail(error),
      cause: error,
    });
  }
  try {
    if (first.kind === "skipped") {
      throw new CopyError("source", `cannot copy ${localPath}: ${first.reason}`, {
        path: localPath,
        errno: first.code,
      });
    }
    const destState = await statGuestPath(client, destination.path, true, metadata, signal);
    if (destState.error !== "") {
      throw new CopyError(
        "destination",
        `cannot examine guest:${destination.path}: ${errnoText(destState.errorCode) ?? cutText(destState.error, MAX_GUEST_MESSAGE)}`,
        { path: destination.path, guestCode: cutText(destState.errorCode, MAX_GUEST_CODE) },
      );
    }
    const placement = placeCopy(source, first.kind === "dir", basename(absSource), destination, destState);
    if (placement.createsDestination) {
      const parent = posix.dirname(placement.target);
      const parentState = await statGuestPath(client, parent, true, metadata, signal);
      if (!parentState.exists || !parentState.isDir) {
        throw new CopyError("destination", `guest directory ${parent} does not exist`, { path: parent });
      }
    }
    const upload = channel.has(Capability.COPY_MULTI_ENTRY) ? uploadInOneStream : uploadStreamPerEntry;
    return await upload(channel, { first, rest: walk, placement, rootName: basename(absSource), metadata }, options);
  } finally {
    await walk.return(undefined);
  }
}

/** What both upload strategies are given. */
interface UploadPlan {
  readonly first: LocalEntry;
  readonly rest: AsyncGenerator<LocalEntry>;
  readonly placement: Placement;
  readonly rootName: string;
  readonly metadata: grpc.Metadata;
}

/** What happens to one entry, whichever way it travels. */
type PreparedEntry =
  | { kind: "skip" }
  // A directory, a symlink or a small file read whole.
  | { kind: "whole"; start: CopyToGuestStart; data: Uint8Array }
  // A larger file, read chunk by chunk as the stream accepts them.
  | { kind: "streamed"; start: CopyToGuestStart; chunks: AsyncGenerator<Uint8Array> };

/**
 * Reads what the walk found into what travels. Skips (listed in `skipped`) what cannot be
 * read; throws a CopyError for the root or for a file that shrinks while it is read.
 */
class EntryReader {
  readonly skipped = new EntryList<SkippedEntry>();
  // Files that changed while read and were kept, because the caller accepts that.
  readonly changed = new EntryList<string>();
  // procfs, sysfs...: read whole before their start, whose size is what was read.
  readonly #isSynthetic = createSyntheticFileCheck();
  readonly #plan: UploadPlan;
  readonly #options: CopyToOptions;
  readonly #symlinks: boolean;
  // Counted as the entries are sent, for progress and for the errors' counts.
  bytesSent = 0;
  currentPath = "";

  constructor(plan: UploadPlan, options: CopyToOptions, symlinks: boolean) {
    this.#plan = plan;
    this.#options = options;
    this.#symlinks = symlinks;
  }

  /** "root/dir/file", as CopyFromGuest headers name entries. */
  displayPath(entry: LocalEntry): string {
    return entry.relPath === "" ? this.#plan.rootName : `${this.#plan.rootName}/${entry.relPath}`;
  }

  progress(entries: number): void {
    notifyProgress(this.#options, { bytes: this.bytesSent, entries, path: this.currentPath });
  }

  async prepare(entry: LocalEntry, entriesDone: number): Promise<PreparedEntry> {
    const options = this.#options;
    const { target, mergeIntoExisting: skipRoot } = this.#plan.placement;
    if (entry.kind === "skipped") {
      this.skipped.add({ path: this.displayPath(entry), reason: entry.reason, code: entry.code });
      return { kind: "skip" };
    }
    if (skipRoot && entry.relPath === "") return { kind: "skip" };
    const guestPath = entry.relPath === "" ? target : `${target}/${entry.relPath}`;
    this.currentPath = this.displayPath(entry);
    const follow = options.followLinks === true || entry.relPath === "";
    const skip = (reason: string, code: string): PreparedEntry => {
      if (entry.relPath === "") throw new CopyError("source", `cannot copy ${entry.absPath}: ${reason}`);
      this.skipped.add({ path: this.currentPath, reason, code });
      return { kind: "skip" };
    };
    const counts = () => ({ entriesCompleted: entriesDone, bytesCompleted: this.bytesSent });
    const shrank = () =>
      new CopyError("source-changed", `${entry.absPath} shrank while it was being copied`, {
        path: this.currentPath,
        ...counts(),
      });
    // Unless accepted, a file whose size or times differ after the read fails the upload
    // before its `end` goes out, so the agent commits nothing of it.
    const changedWhileRead = (before: BigIntStats, after: BigIntStats): void => {
      if (before.size === after.size && before.mtimeNs === after.mtimeNs && before.ctimeNs === after.ctimeNs) return;
      if (options.acceptChangingFiles !== true) {
        throw new CopyError(
          "source-changed",
          `${this.currentPath} changed while it was read (its size or times differed after the read), so what was read may mix old and new content; it was not copied ${ACCEPT_HINT}`,
          { path: this.currentPath, ...counts() },
        );
      }
      this.changed.add(this.currentPath);
    };
    if (entry.kind === "file" && entry.stats.size <= SMALL_FILE_BYTES) {
      const file = readSmallSource(entry, follow, this.#isSynthetic);
      if ("skip" in file) return skip(file.skip.reason, file.skip.code);
      if ("data" in file) {
        if (file.data.length < file.stats.size) throw shrank();
        changedWhileRead(file.stats, file.after);
        return { kind: "whole", start: startOf(guestPath, file.stats, false, "", options), data: file.data };
      }
    }
    if (entry.kind === "file") {
      const file = await openSource(entry, follow, this.#isSynthetic);
      if ("skip" in file) return skip(file.skip.reason, file.skip.code);
      if (file.synthetic) {
        const whole = await readWholeFile(file.handle).finally(() => file.handle.close());
        if (whole.kind === "too-large") {
          return skip(
            `a file of a synthetic file system (procfs, sysfs...) that holds more than ${whole.limit} bytes is not copied`,
            "EFBIG",
          );
        }
        // Its size is what was read; it is never `changed`: its content is made by the read.
        const start = startOf(guestPath, file.stats, false, "", options, BigInt(whole.data.length));
        return { kind: "whole", start, data: whole.data };
      }
      return {
        kind: "streamed",
        start: startOf(guestPath, file.stats, false, "", options),
        chunks: this.#chunks(file.handle, file.stats, shrank, changedWhileRead, entriesDone),
      };
    }
    if (entry.kind === "symlink" && !this.#symlinks) {
      return skip("the agent cannot create symlinks (it speaks only the original protocol)", "UNSUPPORTED");
    }
    const isSymlink = entry.kind === "symlink";
    const start = startOf(guestPath, entry.stats, isSymlink, isSymlink ? entry.linkTarget : "", options);
    return { kind: "whole", start, data: EMPTY };
  }

  // A file's data, CHUNK_SIZE at a time; the handle is closed however the reading ends.
  async *#chunks(
    handle: FileHandle,
    stats: BigIntStats,
    shrank: () => CopyError,
    changedWhileRead: (before: BigIntStats, after: BigIntStats) => void,
    entriesDone: number,
  ): AsyncGenerator<Uint8Array> {
    try {
      let remaining = stats.size;
      while (remaining > 0n) {
        const length = Number(remaining < BigInt(CHUNK_SIZE) ? remaining : BigInt(CHUNK_SIZE));
        // A fresh buffer per chunk: the message may still be queued when the next read
        // happens. allocateBulkData's lets the message be encoded without a copy.
        const chunk = allocateBulkData(length);
        const { bytesRead } = await handle.read(chunk, 0, length, null);
        if (bytesRead === 0) throw shrank();
        const signal = this.#options.signal;
        if (signal?.aborted) throw abortedError(signal);
        remaining -= BigInt(bytesRead);
        yield chunk.subarray(0, bytesRead);
        this.bytesSent += bytesRead;
        this.progress(entriesDone);
      }
      // Before the caller sends the file's `end`.
      changedWhileRead(stats, await handle.stat({ bigint: true }));
    } finally {
      await handle.close();
    }
  }
}

/** One CopyToGuest call: its stream, a backpressured send, and the answer. */
class UploadCall {
  readonly stream: grpc.ClientWritableStream<CopyToGuestRequest>;
  readonly response: Promise<CopyToGuestResponse>;
  // Settles when the guest answers, which it may do early (a failure mid-stream).
  readonly #answer: Promise<void>;
  answered = false;

  constructor(channel: GuestChannel, metadata: grpc.Metadata) {
    let stream: grpc.ClientWritableStream<CopyToGuestRequest> | undefined;
    this.response = new Promise<CopyToGuestResponse>((resolve, reject) => {
      stream = channel.guest.copyToGuest(metadata, {}, (error, value) => {
        if (error) reject(error);
        else if (value) resolve(value);
        else reject(new Error("no response"));
      });
    });
    this.stream = stream as grpc.ClientWritableStream<CopyToGuestRequest>;
    const settled = () => {
      this.answered = true;
    };
    this.#answer = this.response.then(settled, settled);
  }

  /**
   * Writes `message`, waiting while the stream pushes back; throws EarlyAnswer once the
   * guest answered, except after the `last` message of what the guest may answer to.
   */
  async send(message: CopyToGuestRequest, last = false): Promise<void> {
    if (this.answered) throw new EarlyAnswer();
    if (this.stream.write(message) || last) return;
    await new Promise<void>((resolveDrain) => {
      const done = () => {
        this.stream.off("drain", done);
        resolveDrain();
      };
      this.stream.on("drain", done);
      void this.#answer.then(done);
    });
    if (this.answered) throw new EarlyAnswer();
  }

  /** Sends one entry in the original framing: start, data..., end (`last`: see send). */
  async sendEntry(prepared: Exclude<PreparedEntry, { kind: "skip" }>, last = false): Promise<void> {
    await this.send(startRequest(prepared.start));
    if (prepared.kind === "whole") {
      if (prepared.data.length > 0) await this.send(dataRequest(prepared.data));
    } else {
      for await (const chunk of prepared.chunks) await this.send(dataRequest(chunk));
    }
    await this.send(END, last);
  }

  /** Ends the call from this side after a local failure and waits for it to settle. */
  async abandon(): Promise<void> {
    this.stream.cancel();
    await this.#answer;
  }
}

// The whole tree in one stream (see the file comment).
async function uploadInOneStream(channel: GuestChannel, plan: UploadPlan, options: CopyToOptions): Promise<CopyResult> {
  const { signal } = options;
  const reader = new EntryReader(plan, options, true);
  const call = new UploadCall(channel, plan.metadata);
  const onAbort = () => call.stream.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  const batching = channel.has(Capability.COPY_BATCH);
  let batch: CopyToGuestBatchEntry[] = [];
  let batchBytes = 0;
  let entries = 0;

  const flushBatch = async (): Promise<void> => {
    if (batch.length === 0) return;
    const entries = batch;
    batch = [];
    batchBytes = 0;
    await call.send(create(CopyToGuestRequestSchema, { request: { case: "batch", value: { entries } } }));
  };

  const sendEntry = async (entry: LocalEntry): Promise<void> => {
    const prepared = await reader.prepare(entry, entries);
    if (prepared.kind === "skip") return;
    if (batching && prepared.kind === "whole") {
      if (batch.length >= MAX_BATCH_ENTRIES || batchBytes + prepared.data.length > MAX_BATCH_BYTES) await flushBatch();
      batch.push(create(CopyToGuestBatchEntrySchema, { start: prepared.start, data: prepared.data }));
      batchBytes += prepared.data.length;
      reader.bytesSent += prepared.data.length;
    } else {
      // Entries take effect in stream order: whatever waits in the batch goes first.
      await flushBatch();
      await call.sendEntry(prepared);
      if (prepared.kind === "whole") reader.bytesSent += prepared.data.length;
    }
    entries += 1;
    reader.progress(entries);
  };

  const counts = () => ({ entriesCompleted: entries, bytesCompleted: reader.bytesSent });
  let result: CopyToGuestResponse;
  let cutShort = false;
  try {
    try {
      await sendEntry(plan.first);
      let turnStarted = performance.now();
      for await (const entry of plan.rest) {
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
      call.stream.end();
    } catch (error) {
      // The guest's own answer (a failure it reported) explains an early end better.
      cutShort = true;
      if (!(error instanceof EarlyAnswer)) {
        await call.abandon();
        throw localFailure(error, reader.currentPath, signal, counts());
      }
    }
    try {
      result = await call.response;
    } catch (error) {
      if (signal?.aborted) throw abortedError(signal, counts());
      throw callError(error, "CopyToGuest", counts());
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (!result.success) throw guestFailure(result);
  // An answer is success only for everything that was sent: one that came early, or
  // that counts fewer entries, means entries were dropped.
  if (cutShort || Number(result.entriesWritten) !== entries) {
    throw new CopyError(
      "protocol",
      `the guest reported success for ${result.entriesWritten} of the ${entries} entries sent${cutShort ? " before the upload was complete" : ""}`,
      { entriesCompleted: Number(result.entriesWritten), bytesCompleted: Number(result.bytesWritten) },
    );
  }
  return finished(reader, entries);
}

// One stream per entry, a few in flight (see the file comment).
async function uploadStreamPerEntry(
  channel: GuestChannel,
  plan: UploadPlan,
  options: CopyToOptions,
): Promise<CopyResult> {
  const { signal } = options;
  const reader = new EntryReader(plan, options, false);
  const inFlight = new Set<Promise<void>>();
  const calls = new Set<UploadCall>();
  let entries = 0;
  let failure: unknown;
  const counts = () => ({ entriesCompleted: entries, bytesCompleted: reader.bytesSent });
  const onAbort = () => {
    for (const call of calls) call.stream.cancel();
  };
  signal?.addEventListener("abort", onAbort, { once: true });

  const uploadOne = async (prepared: Exclude<PreparedEntry, { kind: "skip" }>, path: string): Promise<void> => {
    const call = new UploadCall(channel, plan.metadata);
    calls.add(call);
    try {
      try {
        // An agent that takes one entry answers once it has the `end`.
        await call.sendEntry(prepared, true);
        call.stream.end();
      } catch (error) {
        if (error instanceof EarlyAnswer) {
          const early = await call.response.catch(() => undefined);
          if (early && !early.success) throw guestFailure(early, counts());
          throw new CopyError(
            "protocol",
            `the guest reported success before the upload was complete (${path} was not sent whole)`,
            {
              path,
              ...counts(),
            },
          );
        }
        await call.abandon();
        throw localFailure(error, path, signal, counts());
      }
      let result: CopyToGuestResponse;
      try {
        result = await call.response;
      } catch (error) {
        if (signal?.aborted) throw abortedError(signal, counts());
        throw callError(error, `CopyToGuest ${path}`, counts());
      }
      if (!result.success) throw guestFailure(result, counts(), path);
      const size = prepared.start.isDir ? 0n : prepared.start.size;
      if (result.bytesWritten !== size) {
        throw new CopyError("size-mismatch", `the guest wrote ${result.bytesWritten} of the ${size} bytes of ${path}`, {
          path,
          ...counts(),
        });
      }
      entries += 1;
      if (prepared.kind === "whole") reader.bytesSent += prepared.data.length;
      reader.progress(entries);
    } finally {
      calls.delete(call);
    }
  };

  // Starts an entry's stream; returns once another may start.
  const start = async (prepared: Exclude<PreparedEntry, { kind: "skip" }>): Promise<void> => {
    const path = reader.currentPath;
    const running: Promise<void> = uploadOne(prepared, path).then(
      () => {
        inFlight.delete(running);
      },
      (error: unknown) => {
        inFlight.delete(running);
        failure ??= error;
      },
    );
    inFlight.add(running);
    // A directory must exist before anything inside it is sent.
    if (prepared.start.isDir) await drain();
    else if (inFlight.size >= STREAMS_PER_ENTRY_IN_FLIGHT) await Promise.race(inFlight);
  };
  const drain = async () => {
    while (inFlight.size > 0) await Promise.race(inFlight);
  };

  try {
    const next = async (entry: LocalEntry) => {
      const prepared = await reader.prepare(entry, entries);
      if (prepared.kind !== "skip") await start(prepared);
    };
    await next(plan.first);
    for await (const entry of plan.rest) {
      if (failure) break;
      if (signal?.aborted) throw abortedError(signal, counts());
      await next(entry);
    }
  } catch (error) {
    failure ??= error;
  } finally {
    await drain();
    signal?.removeEventListener("abort", onAbort);
  }
  if (failure) {
    if (signal?.aborted) throw abortedError(signal, counts());
    throw failure instanceof CopyError ? failure : localFailure(failure, reader.currentPath, signal, counts());
  }
  return finished(reader, entries);
}

function finished(reader: EntryReader, entries: number): CopyResult {
  const { skipped, changed } = reader;
  return {
    bytes: reader.bytesSent,
    entries,
    skipped: skipped.listed,
    skippedCount: skipped.count,
    partial: skipped.count > 0,
    changed: changed.listed,
    changedCount: changed.count,
  };
}

// The CopyError for a failure on this side (reading, the caller's abort).
function localFailure(
  error: unknown,
  path: string,
  signal: AbortSignal | undefined,
  counts: { entriesCompleted: number; bytesCompleted: number },
): CopyError {
  if (signal?.aborted) return abortedError(signal, counts);
  if (error instanceof CopyError) return error;
  return new CopyError("local-io", `cannot read ${path}: ${describeLocalError(error)}`, {
    path,
    ...errnoDetail(error),
    ...counts,
    cause: error,
  });
}

// The CopyError for an answer with success=false.
function guestFailure(
  result: CopyToGuestResponse,
  counts?: { entriesCompleted: number; bytesCompleted: number },
  entryPath?: string,
): CopyError {
  const errorPath = cutText(result.errorPath, MAX_GUEST_PATH) || entryPath || "";
  const guestCode = cutText(result.errorCode, MAX_GUEST_CODE);
  const committed = counts?.entriesCompleted ?? Number(result.entriesWritten);
  // An errno in the system's words with the path; other failures as the guest said them.
  const known = errnoText(guestCode);
  const what =
    known !== undefined
      ? `cannot copy to guest:${errorPath}: ${known}`
      : `guest: ${cutText(result.error, MAX_GUEST_MESSAGE) || "copy failed"}${errorPath ? ` (${errorPath})` : ""}`;
  return new CopyError("guest-failed", `${what}; ${committed} entries were committed before the failure`, {
    path: errorPath,
    guestCode,
    entriesCompleted: committed,
    bytesCompleted: counts?.bytesCompleted ?? Number(result.bytesWritten),
  });
}

/** Thrown inside the send loop when the guest answered before the upload was over. */
class EarlyAnswer extends Error {}

const EMPTY = new Uint8Array(0);
const END = create(CopyToGuestRequestSchema, { request: { case: "end", value: {} } });

function startRequest(start: CopyToGuestStart): CopyToGuestRequest {
  return create(CopyToGuestRequestSchema, { request: { case: "start", value: start } });
}

function dataRequest(data: Uint8Array): CopyToGuestRequest {
  return create(CopyToGuestRequestSchema, { request: { case: "data", value: data } });
}

/** The start of an entry; `size` overrides a file's stat size (a synthetic file's is what was read). */
function startOf(
  path: string,
  stats: BigIntStats,
  isSymlink: boolean,
  linkTarget: string,
  options: CopyToOptions,
  size?: bigint,
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
    size: stats.isFile() ? (size ?? stats.size) : 0n,
    mtime: seconds,
    mtimeNanos: Number(nanos),
    uid: own ? Number(stats.uid) : 0,
    gid: own ? Number(stats.gid) : 0,
    chown: own,
    isSymlink,
    linkTarget,
  });
}

type OpenedSource =
  | { handle: FileHandle; stats: BigIntStats; synthetic: boolean }
  | { skip: { reason: string; code: string } };

/**
 * Opens a file the walk found. O_NONBLOCK keeps a file swapped for a FIFO since the walk
 * from hanging the open; the fstat afterwards checks that it is still a regular file.
 */
async function openSource(entry: LocalEntry, follow: boolean, isSynthetic: SyntheticFileCheck): Promise<OpenedSource> {
  const flags = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | (follow ? 0 : fsConstants.O_NOFOLLOW);
  let handle: FileHandle;
  try {
    handle = await open(entry.absPath, flags);
  } catch (error) {
    return { skip: { reason: describeLocalError(error), code: errorCodeOf(error) } };
  }
  const stats = await handle.stat({ bigint: true });
  if (!stats.isFile()) {
    await handle.close();
    return { skip: { reason: "no longer a regular file", code: ErrorCode.SPECIAL_FILE } };
  }
  return { handle, stats, synthetic: isSynthetic(handle.fd, entry.absPath, stats.dev) };
}

/**
 * openSource for a small file, synchronously, reading it whole, with its fstat before and
 * after the read. `{ large }` when the file grew past SMALL_FILE_BYTES since the walk, or
 * is synthetic (procfs, sysfs: its size says nothing): it then goes through openSource.
 */
function readSmallSource(
  entry: LocalEntry,
  follow: boolean,
  isSynthetic: SyntheticFileCheck,
):
  | { stats: BigIntStats; data: Buffer; after: BigIntStats }
  | { large: true }
  | { skip: { reason: string; code: string } } {
  const flags = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | (follow ? 0 : fsConstants.O_NOFOLLOW);
  let fd: number;
  try {
    fd = openSync(entry.absPath, flags);
  } catch (error) {
    return { skip: { reason: describeLocalError(error), code: errorCodeOf(error) } };
  }
  try {
    const stats = fstatSync(fd, { bigint: true });
    if (!stats.isFile()) return { skip: { reason: "no longer a regular file", code: ErrorCode.SPECIAL_FILE } };
    if (stats.size > SMALL_FILE_BYTES || isSynthetic(fd, entry.absPath, stats.dev)) return { large: true };
    const data = Buffer.allocUnsafe(Number(stats.size));
    let offset = 0;
    while (offset < data.length) {
      const read = readSync(fd, data, offset, data.length - offset, null);
      if (read === 0) break;
      offset += read;
    }
    return { stats, data: data.subarray(0, offset), after: fstatSync(fd, { bigint: true }) };
  } finally {
    closeSync(fd);
  }
}

function errnoDetail(error: unknown): { errno?: string } {
  const errno = errnoOf(error);
  return errno === "" ? {} : { errno };
}
