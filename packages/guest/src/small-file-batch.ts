// Small files of an upload, committed in batches. For a 1 KiB file the disk work is
// trivial and the cost is the trip through libuv's thread pool for each of open, write,
// chown, chmod, utimes, fsync, close and rename. Here a small file arrives whole in
// memory, is written to its temporary name with synchronous calls in one event-loop
// turn, and stays open; a batch is then fsynced together (in parallel, so a journalling
// file system shares its flushes) and only after that renamed into place, in stream
// order. The atomic-upload guarantees are those of StagedFile: no final name ever shows
// a partial file, and a file's data is on disk before its rename.
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsync,
  futimesSync,
  openSync,
  renameSync,
  statfsSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { type EntryAttributes, temporaryNameFor } from "./atomic-file.js";
import { checkTimeKept, nowArgument, timeArgument, timeMayBeClamped } from "./file-times.js";

/** Files staged before a batch is synced and renamed; each holds an open descriptor until then. */
export const BATCH_FILES = 128;

interface StagedSmallFile {
  target: string;
  temporary: string;
  fd: number;
  size: bigint;
  /** False on a memory-backed file system, where fsync does nothing (see needsSync). */
  sync: boolean;
}

// statfs f_type of the Linux file systems that live only in memory: the kernel's fsync
// there is a no-op, and nothing on them survives a crash, so there is nothing to flush.
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** Where and why committing a batch stopped. */
export interface BatchFailure {
  error: unknown;
  path: string;
}

/** The staged, not yet committed small files of one upload stream, in stream order. */
export class SmallFileBatch {
  #files: StagedSmallFile[] = [];
  // By directory: a tree has few directories and many files, so statfs once per directory.
  readonly #needsSync = new Map<string, boolean>();

  /** How many files wait for `commit`. */
  get length(): number {
    return this.#files.length;
  }

  /**
   * Writes `chunks` to a new temporary file beside `target` and applies owner, mode (after
   * the owner, which clears setuid/setgid) and times (checked to have been kept, see
   * checkTimeKept). Synchronous: the whole file is at
   * most SMALL_FILE_BYTES. On failure nothing of this file is left and the error is thrown.
   */
  stage(target: string, chunks: readonly Uint8Array[], attributes: EntryAttributes): void {
    const temporary = temporaryNameFor(target);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const fd = openSync(temporary, flags, 0o600);
    let size = 0;
    try {
      for (const chunk of chunks) {
        let offset = 0;
        while (offset < chunk.length) offset += writeSync(fd, chunk, offset, chunk.length - offset);
        size += chunk.length;
      }
      if (attributes.owner) fchownSync(fd, attributes.owner.uid, attributes.owner.gid);
      fchmodSync(fd, attributes.mode);
      if (attributes.mtime) {
        futimesSync(fd, nowArgument(), timeArgument(attributes.mtime));
        if (timeMayBeClamped(attributes.mtime)) {
          checkTimeKept(attributes.mtime, fstatSync(fd, { bigint: true }).mtimeNs);
        }
      }
    } catch (error) {
      closeQuietly(fd);
      unlinkQuietly(temporary);
      throw error;
    }
    this.#files.push({ target, temporary, fd, size: BigInt(size), sync: this.syncNeededIn(dirname(target)) });
  }

  /**
   * Syncs every staged file, then renames them in order, calling `onCommitted` after each
   * rename. Stops at the first file that fails (to sync or to rename): it and everything
   * after it are removed, and the failure is returned; what came before it is committed.
   */
  async commit(onCommitted: (target: string, size: bigint) => void): Promise<BatchFailure | undefined> {
    const files = this.#files;
    this.#files = [];
    const synced = await Promise.all(files.map((file) => (file.sync ? syncDescriptor(file.fd) : undefined)));
    let failure: BatchFailure | undefined;
    for (const [index, file] of files.entries()) {
      closeQuietly(file.fd);
      if (failure) {
        unlinkQuietly(file.temporary);
        continue;
      }
      const syncError = synced[index];
      if (syncError !== undefined) {
        failure = { error: syncError, path: file.target };
        unlinkQuietly(file.temporary);
        continue;
      }
      try {
        renameSync(file.temporary, file.target);
        onCommitted(file.target, file.size);
      } catch (error) {
        failure = { error, path: file.target };
        unlinkQuietly(file.temporary);
      }
    }
    return failure;
  }

  /**
   * Whether fsync in `directory` does anything: false on tmpfs and ramfs. Skipping a no-op
   * fsync saves a thread-pool round trip per file (and per directory at the end of an
   * upload) on a guest whose files live in memory; when unsure, true.
   */
  syncNeededIn(directory: string): boolean {
    let needed = this.#needsSync.get(directory);
    if (needed === undefined) {
      try {
        const type = statfsSync(directory).type;
        needed = type !== TMPFS_MAGIC && type !== RAMFS_MAGIC;
      } catch {
        needed = true;
      }
      this.#needsSync.set(directory, needed);
    }
    return needed;
  }

  /** Closes and removes every staged file without committing any. */
  discard(): void {
    for (const file of this.#files) {
      closeQuietly(file.fd);
      unlinkQuietly(file.temporary);
    }
    this.#files = [];
  }
}

// Resolves to the error instead of rejecting, so one failure does not hide which file it was.
function syncDescriptor(fd: number): Promise<unknown> {
  return new Promise((resolve) => fsync(fd, (error) => resolve(error ?? undefined)));
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already failing or already committed: a close error changes nothing for the caller.
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // The temporary file may never have been created; nothing else to clean up.
  }
}
