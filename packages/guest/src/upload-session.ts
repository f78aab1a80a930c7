// The receiving side of one CopyToGuest stream: a state machine over start / data / end
// that commits each entry when its `end` arrives and stops at the first failure.
import { constants } from "node:fs";
import { lstat, open, utimes } from "node:fs/promises";
import { dirname, posix } from "node:path";
import type { CopyToGuestBatch, CopyToGuestRequest, CopyToGuestStart } from "@guestkit/protocol";
import { ErrorCode, errorCodeOf, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, SMALL_FILE_BYTES } from "@guestkit/protocol";
import { type EntryAttributes, replaceWithSymlink, StagedFile } from "./atomic-file.js";
import { CommitPipeline } from "./commit-pipeline.js";
import { applyDirectoryEntry } from "./directory-entry.js";
import type { Timestamp } from "./file-metadata.js";
import { checkTimeKept, MAX_TIME_SECONDS, nowArgument, timeArgument, timeMayBeClamped } from "./file-times.js";
import { describeError } from "./grpc-errors.js";
import { checkGuestPath } from "./guest-path.js";
import { makeParents } from "./make-parents.js";
import { BATCH_FILES, type BatchFailure, SmallFileBatch } from "./small-file-batch.js";

/** Default modes for mode = 0, as the protocol defines them. */
export const DEFAULT_FILE_MODE = 0o644;
export const DEFAULT_DIRECTORY_MODE = 0o755;

/** Why an upload stopped: reported in-band as error / error_path / error_code. */
export class UploadError extends Error {
  /** An errno name, or SIZE_MISMATCH, PROTOCOL. */
  readonly code: string;
  /** The entry the error is about ("" when there is none). */
  readonly path: string;

  constructor(code: string, path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UploadError";
    this.code = code;
    this.path = path;
  }

  /** An UploadError for a failed file system call on `path`. */
  static from(error: unknown, path: string): UploadError {
    if (error instanceof UploadError) return error;
    return new UploadError(errorCodeOf(error), path, `${path}: ${describeError(error)}`, { cause: error });
  }
}

type Entry =
  | { kind: "file"; path: string; start: CopyToGuestStart; staged: StagedFile; received: bigint }
  // Held in memory until its end: nothing touches the disk for a file that never completes.
  | { kind: "small"; path: string; start: CopyToGuestStart; chunks: Uint8Array[]; received: bigint }
  | { kind: "directory"; path: string; start: CopyToGuestStart }
  | { kind: "symlink"; path: string; start: CopyToGuestStart };

/** Counts of what one stream committed. */
export interface UploadTotals {
  entriesWritten: bigint;
  bytesWritten: bigint;
}

/** One CopyToGuest stream's state. Feed every request to `receive`, then `finish` or `abort`. */
export class UploadSession {
  #entry: Entry | undefined;
  #entriesWritten = 0n;
  #bytesWritten = 0n;
  // Set once nothing more will be written into them (see finish), deepest first.
  readonly #directoryTimes = new Map<string, Timestamp>();
  // Directories whose entries changed, fsynced once at the end so the renames are durable.
  readonly #touchedDirectories = new Set<string>();
  readonly #knownDirectories = new Set<string>();
  readonly #commits = new CommitPipeline();
  readonly #smallFiles = new SmallFileBatch();
  #batchFailure: BatchFailure | undefined;

  get totals(): UploadTotals {
    return { entriesWritten: this.#entriesWritten, bytesWritten: this.#bytesWritten };
  }

  /** Handles one request message; rejects with UploadError and leaves no temporary file behind. */
  async receive(request: CopyToGuestRequest): Promise<void> {
    try {
      this.#throwIfCommitFailed();
      switch (request.request.case) {
        case "start":
          return await this.#start(request.request.value);
        case "data":
          return await this.#data(request.request.value);
        case "end":
          return await this.#end();
        case "batch":
          return await this.#batch(request.request.value);
        default:
          throw new UploadError(
            ErrorCode.PROTOCOL,
            this.#entry?.path ?? "",
            "a request with no start, data or end, and no batch",
          );
      }
    } catch (error) {
      const path = this.#entry?.path ?? "";
      await this.#discard();
      throw UploadError.from(error, path);
    }
  }

  /** The client closed its side: checks nothing was left open and makes the result durable. */
  async finish(): Promise<void> {
    if (this.#entry) {
      const path = this.#entry.path;
      await this.#discard();
      throw new UploadError(ErrorCode.PROTOCOL, path, `${path}: the stream ended before this entry's end message`);
    }
    await this.#commitEarlier();
    await this.#settle(true);
  }

  /**
   * After a failure or a cancelled call: drops the entry in progress; files whose `end`
   * had arrived are still committed (up to the first one that fails), and directory times
   * are applied.
   */
  async abort(): Promise<void> {
    await this.#discard();
    await this.#commits.drain();
    if (!this.#commits.failure) await this.#commitSmallFiles();
    else this.#smallFiles.discard();
    await this.#settle(false).catch(() => undefined);
  }

  /** The failure that stopped the stream, when it happened in a background commit. */
  get commitFailure(): UploadError | undefined {
    const failure = this.#commits.failure ?? this.#batchFailure;
    return failure && UploadError.from(failure.error, failure.path);
  }

  #throwIfCommitFailed(): void {
    const failure = this.commitFailure;
    if (failure) throw failure;
  }

  // Each entry goes through #start, #data and #end exactly as if it had come as three
  // messages, so a batched entry is checked and committed by the same code as any other.
  async #batch(batch: CopyToGuestBatch): Promise<void> {
    if (this.#entry) {
      const path = this.#entry.path;
      throw new UploadError(ErrorCode.PROTOCOL, path, `${path}: a batch arrived before this entry's end message`);
    }
    if (batch.entries.length > MAX_BATCH_ENTRIES) {
      throw new UploadError(
        ErrorCode.PROTOCOL,
        "",
        `a batch of ${batch.entries.length} entries (at most ${MAX_BATCH_ENTRIES} are allowed)`,
      );
    }
    let bytes = 0;
    for (const { start, data } of batch.entries) {
      if (!start) throw new UploadError(ErrorCode.PROTOCOL, "", "a batch entry without its start");
      bytes += data.length;
      if (bytes > MAX_BATCH_BYTES) {
        throw new UploadError(
          ErrorCode.PROTOCOL,
          start.path,
          `${start.path}: a batch with more than ${MAX_BATCH_BYTES} bytes`,
        );
      }
      // A batch holds whole files in memory: only small ones belong in it.
      if (!start.isDir && !start.isSymlink && start.size > BigInt(SMALL_FILE_BYTES)) {
        throw new UploadError(
          ErrorCode.PROTOCOL,
          start.path,
          `${start.path}: a file of ${start.size} bytes in a batch (at most ${SMALL_FILE_BYTES})`,
        );
      }
      await this.#start(start);
      if (data.length > 0) await this.#data(data);
      await this.#end();
    }
  }

  async #start(start: CopyToGuestStart): Promise<void> {
    if (this.#entry) {
      const path = this.#entry.path;
      throw new UploadError(ErrorCode.PROTOCOL, path, `${path}: a new start arrived before this entry's end message`);
    }
    checkStart(start);
    if (start.isDir) {
      this.#entry = { kind: "directory", path: start.path, start };
    } else if (start.isSymlink) {
      this.#entry = { kind: "symlink", path: start.path, start };
    } else if (start.size <= BigInt(SMALL_FILE_BYTES)) {
      this.#entry = { kind: "small", path: start.path, start, chunks: [], received: 0n };
    } else {
      let staged: StagedFile;
      try {
        staged = await StagedFile.create(start.path, this.#knownDirectories);
      } catch (error) {
        throw UploadError.from(error, start.path);
      }
      this.#entry = { kind: "file", path: start.path, start, staged, received: 0n };
    }
  }

  async #data(bytes: Uint8Array): Promise<void> {
    const entry = this.#entry;
    if (!entry) throw new UploadError(ErrorCode.PROTOCOL, "", "data arrived before any start message");
    if (entry.kind !== "file" && entry.kind !== "small") {
      throw new UploadError(ErrorCode.PROTOCOL, entry.path, `${entry.path}: data arrived for a ${entry.kind}`);
    }
    const received = entry.received + BigInt(bytes.length);
    if (received > entry.start.size) {
      throw new UploadError(
        ErrorCode.SIZE_MISMATCH,
        entry.path,
        `${entry.path}: more data than the declared size of ${entry.start.size} bytes`,
      );
    }
    if (entry.kind === "small") entry.chunks.push(bytes);
    else await entry.staged.write(bytes);
    entry.received = received;
  }

  async #end(): Promise<void> {
    const entry = this.#entry;
    if (!entry) throw new UploadError(ErrorCode.PROTOCOL, "", "an end message arrived before any start message");
    const attributes = attributesOf(entry.start);
    if ((entry.kind === "file" || entry.kind === "small") && entry.received !== entry.start.size) {
      throw new UploadError(
        ErrorCode.SIZE_MISMATCH,
        entry.path,
        `${entry.path}: ${entry.received} of the declared ${entry.start.size} bytes arrived`,
      );
    }
    switch (entry.kind) {
      case "small": {
        // Files before it in the stream are renamed before it: large ones first, here.
        await this.#commits.drain();
        this.#throwIfCommitFailed();
        await makeParents(dirname(entry.path), this.#knownDirectories);
        this.#smallFiles.stage(entry.path, entry.chunks, attributes);
        this.#entry = undefined;
        if (this.#smallFiles.length >= BATCH_FILES) await this.#commitSmallFiles();
        this.#throwIfCommitFailed();
        return;
      }
      case "file": {
        const size = entry.received;
        // While this entry is current, a failure here still discards its temporary file.
        await this.#commitSmallFiles();
        this.#throwIfCommitFailed();
        // From here the pipeline owns the file, commits it in order, or discards it.
        this.#entry = undefined;
        await this.#commits.add(entry.staged, attributes, () => this.#committed(entry.path, size));
        return;
      }
      case "directory":
        // Directories and symlinks take effect in stream order, after the files before them.
        await this.#commitEarlier();
        await applyDirectoryEntry(entry.path, attributes, (entry.start.mode & 0o7777) !== 0, this.#knownDirectories);
        this.#knownDirectories.add(entry.path);
        if (attributes.mtime) this.#directoryTimes.set(entry.path, attributes.mtime);
        break;
      case "symlink":
        await this.#commitEarlier();
        await replaceWithSymlink(entry.path, entry.start.linkTarget, attributes);
        // A directory path may have just become a link.
        this.#knownDirectories.delete(entry.path);
        break;
    }
    this.#entry = undefined;
    this.#committed(entry.path, 0n);
  }

  // Everything before the current entry takes effect first: streamed files, then small ones.
  async #commitEarlier(): Promise<void> {
    await this.#commits.drain();
    this.#throwIfCommitFailed();
    await this.#commitSmallFiles();
    this.#throwIfCommitFailed();
  }

  async #commitSmallFiles(): Promise<void> {
    if (this.#smallFiles.length === 0) return;
    const failure = await this.#smallFiles.commit((path, size) => this.#committed(path, size));
    this.#batchFailure ??= failure;
  }

  #committed(path: string, bytes: bigint): void {
    this.#touchedDirectories.add(dirname(path));
    this.#entriesWritten += 1n;
    this.#bytesWritten += bytes;
  }

  async #discard(): Promise<void> {
    const entry = this.#entry;
    this.#entry = undefined;
    if (entry?.kind === "file") await entry.staged.discard();
  }

  // Directory times are set only here, once nothing more is written into them, deepest
  // first as tar does; setting a directory's time does not touch its parent's. So a time
  // the file system does not keep (checkTimeKept) is found only now, after the
  // directory's contents: the upload then fails naming the directory.
  async #settle(durable: boolean): Promise<void> {
    const byDepth = [...this.#directoryTimes].sort(([a], [b]) => depth(b) - depth(a));
    this.#directoryTimes.clear();
    // Every directory gets its time even after one failed; the first failure is the answer.
    let failure: UploadError | undefined;
    for (const [path, mtime] of byDepth) {
      try {
        await utimes(path, nowArgument(), timeArgument(mtime));
        if (timeMayBeClamped(mtime)) checkTimeKept(mtime, (await lstat(path, { bigint: true })).mtimeNs);
      } catch (error) {
        failure ??= UploadError.from(error, path);
      }
    }
    if (failure) throw failure;
    if (!durable) return;
    for (const directory of this.#touchedDirectories) {
      // Nothing to make durable on a memory-backed file system.
      if (!this.#smallFiles.syncNeededIn(directory)) continue;
      try {
        await syncDirectory(directory);
      } catch (error) {
        throw UploadError.from(error, directory);
      }
    }
    this.#touchedDirectories.clear();
  }
}

/** Rejects a start message that cannot be carried out as asked. */
function checkStart(start: CopyToGuestStart): void {
  const problem = checkGuestPath(start.path);
  if (problem) throw new UploadError("EINVAL", start.path, problem);
  const fail = (message: string) => {
    throw new UploadError("EINVAL", start.path, `${start.path}: ${message}`);
  };
  if (start.size < 0n) fail(`negative size ${start.size}`);
  if (start.isDir && start.isSymlink) fail("an entry cannot be both a directory and a symlink");
  if (start.isSymlink && start.linkTarget === "") fail("a symlink needs a link_target");
  if (start.linkTarget.includes("\0")) fail("the link target contains a NUL byte");
  if (start.mtimeNanos >= 1_000_000_000) fail(`mtime_nanos ${start.mtimeNanos} is not below one second`);
  if (start.mtime < 0n) fail(`mtime ${start.mtime} is before 1970, which this agent cannot set`);
  if (start.mtime > MAX_TIME_SECONDS) fail(`mtime ${start.mtime} is out of range`);
  if (!start.isDir) {
    const name = posix.basename(start.path);
    if (start.path.endsWith("/") || name === "." || name === "..") fail("not a file name");
  }
}

/** What the start message asks for, with the protocol's defaults filled in. */
function attributesOf(start: CopyToGuestStart): EntryAttributes {
  const mode = start.mode & 0o7777 || (start.isDir ? DEFAULT_DIRECTORY_MODE : DEFAULT_FILE_MODE);
  const wantsOwner = start.chown || start.uid !== 0 || start.gid !== 0;
  const wantsTime = start.mtime !== 0n || start.mtimeNanos !== 0;
  return {
    mode,
    ...(wantsOwner ? { owner: { uid: start.uid, gid: start.gid } } : {}),
    ...(wantsTime ? { mtime: { seconds: start.mtime, nanos: start.mtimeNanos } } : {}),
  };
}

function depth(path: string): number {
  return path.split("/").length;
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
