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
// The copy engine walks the tree, opens and reads files, and encodes the messages
// (@guestkit/copy); this file decides what the host accepts and drives the calls. Files
// are read CHUNK_SIZE at a time and the next chunk is read only when the call accepts
// more, so memory stays flat whatever the size.
import type { BigIntStats } from "node:fs";
import type { Socket } from "node:net";
import { basename, posix, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  createSyntheticFileCheck,
  entryMetadata,
  readSource,
  type Source,
  streamSource,
  UploadEncoder,
  type WalkItem,
  walkTree,
} from "@guestkit/copy";
import {
  Capability,
  type CopyToGuestRequest,
  CopyToGuestRequestSchema,
  type CopyToGuestResponse,
  type CopyToGuestStart,
  CopyToGuestStartSchema,
  cutText,
  DATA_CONNECTION_MIN_BYTES,
  DataConnectionError,
  errnoOf,
  FrameWriter,
  MAX_GUEST_CODE,
  MAX_GUEST_MESSAGE,
  MAX_GUEST_PATH,
} from "@guestkit/protocol";
import { describeLocalError, errnoText } from "../guest-error.js";
import { askForDataConnection, ticketOf } from "../transport/data-connection.js";
import type { GuestChannel } from "../transport/guest-connection.js";
import { abortedError, callError, dataConnectionError, statGuestPath } from "./copy-call.js";
import { type Placement, parseDestination, parseSource, placeCopy } from "./copy-destination.js";
import { CopyError } from "./copy-error.js";
import {
  ACCEPT_HINT,
  type CopyOptions,
  type CopyResult,
  callMetadata,
  EntryList,
  notifyProgress,
  type SkippedEntry,
} from "./copy-types.js";
import { sanitizeMode } from "./path-safety.js";

/** Options of copyTo. */
export type CopyToOptions = CopyOptions;

// Streams in flight at once against an agent that takes one entry per stream: enough to
// hide the round trip of each answer, few enough that a failure stops the rest quickly.
const STREAMS_PER_ENTRY_IN_FLIGHT = 8;

/**
 * Copies `localPath` (a file, a symlink, or a whole tree) to `guestPath` in the guest,
 * with the `docker cp` destination rules (see placeCopy). `guestPath` must be absolute.
 * Special files (FIFOs, sockets, devices) and unreadable entries inside a tree are
 * skipped and listed in the result, which is then `partial`. A file that shrinks while
 * it is read, or changes otherwise (see `acceptChangingFiles`), fails the copy with
 * SOURCE_CHANGED before its `end` is sent, so the agent commits nothing of it. Files of
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
  const absSource = resolve(source.path);
  const walk = walkTree(absSource, { followLinks: options.followLinks ?? false, followRoot: source.mustBeDir });
  let first: WalkItem;
  try {
    first = (await walk.next()).value as WalkItem;
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
    const placement = placeCopy(source, first.stats.isDirectory(), basename(absSource), destination, destState);
    if (placement.createsDestination) {
      const parent = posix.dirname(placement.target);
      const parentState = await statGuestPath(client, parent, true, metadata, signal);
      if (!parentState.exists || !parentState.isDir) {
        throw new CopyError("destination", `guest directory ${parent} does not exist`, { path: parent });
      }
    }
    const oneStream = channel.has(Capability.COPY_MULTI_ENTRY);
    const reader = new EntryReader(placement, basename(absSource), options, oneStream);
    // A tree or a big file moves on a data connection where the agent offers one.
    const bulk = first.stats.isDirectory() || (first.stats.isFile() && first.stats.size >= DATA_CONNECTION_MIN_BYTES);
    const plan: UploadPlan = {
      items: itemsOf(first, walk),
      reader,
      metadata,
      signal,
      dataConnection: bulk && channel.has(Capability.DATA_CONNECTION),
    };
    return await (oneStream ? uploadInOneStream(channel, plan) : uploadStreamPerEntry(channel, plan));
  } finally {
    await walk.return(undefined);
  }
}

/** What both upload strategies are given. */
interface UploadPlan {
  readonly items: AsyncIterable<WalkItem>;
  readonly reader: EntryReader;
  readonly metadata: grpc.Metadata;
  readonly signal: AbortSignal | undefined;
  /** Ask for a data connection (one stream only). */
  readonly dataConnection: boolean;
}

async function* itemsOf(first: WalkItem, rest: AsyncGenerator<WalkItem>): AsyncGenerator<WalkItem> {
  yield first;
  yield* rest;
}

// The whole tree in one stream (see the file comment).
async function uploadInOneStream(channel: GuestChannel, plan: UploadPlan) {
  const { items, reader, metadata, signal } = plan;
  const call = new UploadCall(channel, plan.dataConnection ? askForDataConnection(metadata) : metadata, signal);
  const encoder = new UploadEncoder((request) => call.send(request), channel.has(Capability.COPY_BATCH));
  // The guest answered before the upload was complete: its answer says why.
  let cutShort = false;
  try {
    if (plan.dataConnection) await call.takeDataConnection(channel);
    for await (const item of items) {
      const entry = await reader.prepare(item);
      if (entry === undefined) continue;
      await reader.send(entry, encoder);
      reader.completed(entry);
    }
    await encoder.finish();
    await call.endSending();
  } catch (error) {
    if (!(error instanceof EarlyAnswer)) {
      await call.abandon();
      throw localFailure(error, reader.currentPath, signal, reader.counts());
    }
    cutShort = true;
  }
  const result = await call.answer("CopyToGuest", reader.counts());
  if (!result.success) throw guestFailure(result);
  // An answer is success only for everything that was sent: one that came early, or
  // that counts fewer entries, means entries were dropped.
  if (cutShort || Number(result.entriesWritten) !== reader.entries) {
    throw new CopyError(
      "protocol",
      `the guest reported success for ${result.entriesWritten} of the ${reader.entries} entries sent${cutShort ? " before the upload was complete" : ""}`,
      { entriesCompleted: Number(result.entriesWritten), bytesCompleted: Number(result.bytesWritten) },
    );
  }
  return reader.result();
}

// One stream per entry, a few in flight (see the file comment).
async function uploadStreamPerEntry(channel: GuestChannel, plan: UploadPlan): Promise<CopyResult> {
  const { items, reader, signal } = plan;
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  const drain = async () => {
    while (inFlight.size > 0) await Promise.race(inFlight);
  };
  try {
    for await (const item of items) {
      if (failure) break;
      const entry = await reader.prepare(item);
      if (entry === undefined) continue;
      const running: Promise<void> = uploadEntry(channel, plan, entry).then(
        () => void inFlight.delete(running),
        (error: unknown) => {
          inFlight.delete(running);
          failure ??= error;
        },
      );
      inFlight.add(running);
      // A directory must exist before anything inside it is sent.
      if (entry.start.isDir) await drain();
      else if (inFlight.size >= STREAMS_PER_ENTRY_IN_FLIGHT) await Promise.race(inFlight);
    }
  } catch (error) {
    failure ??= error;
  } finally {
    await drain();
  }
  if (failure) {
    if (signal?.aborted) throw abortedError(signal, reader.counts());
    throw failure instanceof CopyError ? failure : localFailure(failure, reader.currentPath, signal, reader.counts());
  }
  return reader.result();
}

// One entry in a stream of its own, its answer checked.
async function uploadEntry(channel: GuestChannel, { reader, metadata, signal }: UploadPlan, entry: UploadEntry) {
  const { path } = entry;
  const call = new UploadCall(channel, metadata, signal);
  // An agent that takes one entry answers once it has the `end`.
  const encoder = new UploadEncoder((request) => call.send(request, request.request.case === "end"), false);
  try {
    await reader.send(entry, encoder);
    await call.endSending();
  } catch (error) {
    if (error instanceof EarlyAnswer) {
      const early = await call.response.catch(() => undefined);
      if (early && !early.success) throw guestFailure(early, reader.counts());
      throw new CopyError(
        "protocol",
        `the guest reported success before the upload was complete (${path} was not sent whole)`,
        { path, ...reader.counts() },
      );
    }
    await call.abandon();
    throw localFailure(error, path, signal, reader.counts());
  }
  const result = await call.answer(`CopyToGuest ${path}`, reader.counts());
  if (!result.success) throw guestFailure(result, reader.counts(), path);
  const size = entry.start.isDir ? 0n : entry.start.size;
  if (result.bytesWritten !== size) {
    throw new CopyError("size-mismatch", `the guest wrote ${result.bytesWritten} of the ${size} bytes of ${path}`, {
      path,
      ...reader.counts(),
    });
  }
  reader.completed(entry);
}

/** An entry ready to travel: whole (a directory, a symlink, a small file read at once) or streamed. */
type UploadEntry = { path: string; localPath: string; start: CopyToGuestStart } & (
  | { kind: "whole"; data: Uint8Array }
  | { kind: "streamed"; source: Source & { kind: "opened" } }
);

/**
 * Turns what the walk found into what travels, and keeps the tally: what was skipped
 * (listed), what changed and was kept, entries and bytes sent, for progress, the result
 * and the errors' counts. Throws a CopyError for the root, or for a file that shrinks or
 * changes while it is read (unless accepted).
 */
class EntryReader {
  readonly skipped = new EntryList<SkippedEntry>();
  // Files that changed while read and were kept, because the caller accepts that.
  readonly changed = new EntryList<string>();
  readonly #isSynthetic = createSyntheticFileCheck();
  bytes = 0;
  entries = 0;
  currentPath = "";

  constructor(
    readonly placement: Placement,
    readonly rootName: string,
    readonly options: CopyToOptions,
    readonly symlinks: boolean,
  ) {}

  counts(): { entriesCompleted: number; bytesCompleted: number } {
    return { entriesCompleted: this.entries, bytesCompleted: this.bytes };
  }

  /** The entry as it travels, or undefined when it does not (skipped, or the root merged into an existing directory). */
  async prepare(item: WalkItem): Promise<UploadEntry | undefined> {
    const { signal } = this.options;
    if (signal?.aborted) throw abortedError(signal, this.counts());
    const isRoot = item.relativePath === "";
    // "root/dir/file", as CopyFromGuest headers name entries.
    const path = isRoot ? this.rootName : `${this.rootName}/${item.relativePath}`;
    if (item.kind === "skipped") return void this.skipped.add({ path, reason: item.reason, code: item.code });
    const { target, mergeIntoExisting } = this.placement;
    if (isRoot && mergeIntoExisting) return undefined;
    this.currentPath = path;
    const guestPath = isRoot ? target : `${target}/${item.relativePath}`;
    const skip = (code: string, reason: string): undefined => {
      if (isRoot) throw new CopyError("source", `cannot copy ${item.path}: ${reason}`);
      this.skipped.add({ path, reason, code });
    };
    if (!item.stats.isFile()) {
      if (item.stats.isSymbolicLink() && !this.symlinks) {
        return skip("UNSUPPORTED", "the agent cannot create symlinks (it speaks only the original protocol)");
      }
      const start = this.#start(guestPath, item.stats, item.linkTarget);
      return { path, localPath: item.path, start, kind: "whole", data: EMPTY };
    }
    const source = await readSource(item, this.#isSynthetic);
    if (source.kind === "refused") return skip(source.code, source.reason);
    if (source.kind === "opened") {
      return { path, localPath: item.path, start: this.#start(guestPath, source.stats), kind: "streamed", source };
    }
    const entry: UploadEntry = {
      path,
      localPath: item.path,
      start: this.#start(guestPath, source.stats, "", source.size),
      kind: "whole",
      data: source.data,
    };
    if (source.data.length < source.size) throw this.#shrank(entry);
    this.#checkChanged(entry, source.changed);
    return entry;
  }

  /** Sends a prepared entry through `encoder`, reading a streamed file's data as the call accepts it. */
  async send(entry: UploadEntry, encoder: UploadEncoder): Promise<void> {
    if (entry.kind === "whole") await encoder.whole(entry.start, entry.data);
    else await encoder.streamed(entry.start, (sendData) => this.#stream(entry, sendData));
  }

  completed(entry: UploadEntry): void {
    this.entries += 1;
    if (entry.kind === "whole") this.bytes += entry.data.length;
    this.#progress();
  }

  result(): CopyResult {
    const { skipped, changed } = this;
    return {
      bytes: this.bytes,
      entries: this.entries,
      skipped: skipped.listed,
      skippedCount: skipped.count,
      partial: skipped.count > 0,
      changed: changed.listed,
      changedCount: changed.count,
    };
  }

  // A file's data; what is wrong with it throws before the caller sends its `end`.
  async #stream(entry: UploadEntry & { kind: "streamed" }, sendData: (chunk: Uint8Array) => Promise<void>) {
    const { signal } = this.options;
    const outcome = await streamSource(entry.source, async (chunk) => {
      if (signal?.aborted) throw abortedError(signal);
      await sendData(chunk);
      this.bytes += chunk.length;
      this.#progress();
    });
    if (outcome.kind === "shrank") throw this.#shrank(entry);
    if (outcome.kind === "failed") throw outcome.error;
    this.#checkChanged(entry, outcome.changed);
  }

  #progress(): void {
    notifyProgress(this.options, { bytes: this.bytes, entries: this.entries, path: this.currentPath });
  }

  #shrank(entry: UploadEntry): CopyError {
    return new CopyError("source-changed", `${entry.localPath} shrank while it was being copied`, {
      path: entry.path,
      ...this.counts(),
    });
  }

  // Unless accepted, a file whose size or times differ after the read fails the upload
  // before its `end` goes out, so the agent commits nothing of it.
  #checkChanged(entry: UploadEntry, changed: boolean): void {
    if (!changed) return;
    if (this.options.acceptChangingFiles !== true) {
      throw new CopyError(
        "source-changed",
        `${entry.path} changed while it was read (its size or times differed after the read), so what was read may mix old and new content; it was not copied ${ACCEPT_HINT}`,
        { path: entry.path, ...this.counts() },
      );
    }
    this.changed.add(entry.path);
  }

  /** The start of an entry; `size` overrides a file's stat size (a synthetic file's is what was read). */
  #start(path: string, stats: BigIntStats, linkTarget = "", size?: bigint): CopyToGuestStart {
    const metadata = entryMetadata(stats, linkTarget, size);
    const own = this.options.preserveOwnership === true;
    return create(CopyToGuestStartSchema, {
      ...metadata,
      path,
      mode: metadata.isSymlink ? 0 : sanitizeMode(metadata.mode, this.options.keepSetuid === true),
      uid: own ? metadata.uid : 0,
      gid: own ? metadata.gid : 0,
      chown: own,
    });
  }
}

/**
 * One CopyToGuest call: its stream (or its data connection), a backpressured send, and
 * the answer. An abort cancels it.
 */
class UploadCall {
  readonly stream: grpc.ClientWritableStream<CopyToGuestRequest>;
  readonly response: Promise<CopyToGuestResponse>;
  // Settles when the guest answers, which it may do early (a failure mid-stream).
  readonly #answer: Promise<void>;
  readonly #signal: AbortSignal | undefined;
  // Where the requests go when the agent handed out a data connection.
  #data: { socket: Socket; frames: FrameWriter<typeof CopyToGuestRequestSchema> } | undefined;
  answered = false;

  constructor(channel: GuestChannel, metadata: grpc.Metadata, signal: AbortSignal | undefined) {
    let stream: grpc.ClientWritableStream<CopyToGuestRequest> | undefined;
    this.response = new Promise<CopyToGuestResponse>((resolve, reject) => {
      stream = channel.guest.copyToGuest(metadata, {}, (error, value) => {
        if (error) reject(error);
        else if (value) resolve(value);
        else reject(new Error("no response"));
      });
    });
    this.stream = stream as grpc.ClientWritableStream<CopyToGuestRequest>;
    const onAbort = () => {
      this.stream.cancel();
      this.#data?.socket.destroy();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#signal = signal;
    const settled = () => {
      this.answered = true;
      signal?.removeEventListener("abort", onAbort);
      // The agent is done with it, whatever it says.
      this.#data?.socket.destroy();
    };
    this.#answer = this.response.then(settled, settled);
  }

  /**
   * For a call that asked for a data connection: opens it when the agent's response
   * headers hand out a ticket (the call's own stream then carries nothing), or stays
   * in-band when they do not.
   */
  async takeDataConnection(channel: GuestChannel): Promise<void> {
    const ticket = await ticketOf(this.stream);
    if (ticket === undefined || this.answered) return;
    let socket: Socket;
    try {
      socket = await channel.openDataConnection(ticket, this.#signal);
    } catch (error) {
      this.stream.cancel();
      throw error;
    }
    this.#data = { socket, frames: new FrameWriter(socket, CopyToGuestRequestSchema) };
    this.stream.end();
  }

  /** Everything was sent: half-closes the stream, or ends the data connection with its end frame. */
  async endSending(): Promise<void> {
    if (!this.#data) {
      this.stream.end();
      return;
    }
    await this.#dataWrite(() => this.#data?.frames.end());
  }

  /**
   * Writes `message`, waiting while the stream pushes back; throws EarlyAnswer once the
   * guest answered, except after the `last` message of what the guest may answer to.
   */
  async send(message: CopyToGuestRequest, last = false): Promise<void> {
    if (this.answered) throw new EarlyAnswer();
    if (this.#data) {
      const { frames } = this.#data;
      await this.#dataWrite(() => frames.write(message));
      if (this.answered) throw new EarlyAnswer();
      return;
    }
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

  /** The guest's answer, or the CopyError for the call's failure (`context` names it). */
  async answer(context: string, counts: { entriesCompleted: number; bytesCompleted: number }) {
    try {
      return await this.response;
    } catch (error) {
      if (this.#signal?.aborted) throw abortedError(this.#signal, counts);
      throw callError(error, context, counts);
    }
  }

  /** Ends the call from this side after a local failure and waits for it to settle. */
  async abandon(): Promise<void> {
    this.stream.cancel();
    this.#data?.socket.destroy();
    await this.#answer;
  }

  // A data connection the agent closed is usually its answer on the way (a failure
  // mid-stream): that answer says why. One that does not follow soon leaves the lost
  // connection as the reason.
  async #dataWrite(write: () => Promise<void> | undefined): Promise<void> {
    try {
      await write();
    } catch (error) {
      if (!(error instanceof DataConnectionError)) throw error;
      const answered = await Promise.race([
        this.#answer.then(() => true),
        new Promise<boolean>((resolve) => setTimeout(resolve, ANSWER_AFTER_LOSS_MS, false).unref()),
      ]);
      if (answered) throw new EarlyAnswer();
      this.stream.cancel();
      throw dataConnectionError(error);
    }
  }
}

// How long an answer may trail the loss of its data connection.
const ANSWER_AFTER_LOSS_MS = 2000;

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

function errnoDetail(error: unknown): { errno?: string } {
  const errno = errnoOf(error);
  return errno === "" ? {} : { errno };
}
