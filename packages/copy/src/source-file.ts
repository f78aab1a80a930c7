// Reading a file to send it, without being tricked into reading something else: the
// walk saw a regular file, but by the time it is opened it may have been replaced by a
// FIFO (which would block the open forever), a device, or a symlink to a file the peer
// should not get (the agent runs as root; the tree may belong to an unprivileged user).
// Also what the opened file is: an ordinary one, whose size is its content and whose
// stat before and after the read tells whether it changed meanwhile, or a synthetic one
// (procfs, sysfs: see synthetic-files.ts), read to EOF before its size is declared.
import type { BigIntStats } from "node:fs";
import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import {
  allocateBulkData,
  CHUNK_SIZE,
  describeError,
  ErrorCode,
  errorCodeOf,
  SMALL_FILE_BYTES,
} from "@guestkit/protocol";
import { readWholeFile, type SyntheticFileCheck } from "./synthetic-files.js";
import { sameFile, type WalkEntry } from "./tree-walk.js";

/**
 * What reading a regular file the walk found gave:
 * - `refused`: nothing of it can be sent (before its header): why, as a code and reason.
 * - `whole`: read at once (a small file, or a synthetic one read to EOF); `size` is what
 *   its header declares (a synthetic file's is what was read). `data` is shorter than
 *   `size` when the file shrank while it was read; `changed`: it changed otherwise.
 * - `opened`: a larger file, to be sent with streamSource.
 */
export type Source =
  | { kind: "refused"; code: string; reason: string }
  | { kind: "whole"; stats: BigIntStats; size: bigint; data: Buffer; changed: boolean }
  | { kind: "opened"; stats: BigIntStats; handle: FileHandle };

/**
 * Reads or opens the regular file `entry`: a small one whole and synchronously (a trip
 * through the thread pool per call costs more than the call), a synthetic one to EOF
 * (at most MAX_SYNTHETIC_FILE_BYTES), others opened for streamSource. `isSynthetic` is
 * one per transfer (see createSyntheticFileCheck).
 */
export async function readSource(entry: WalkEntry, isSynthetic: SyntheticFileCheck): Promise<Source> {
  if (entry.stats.size <= SMALL_FILE_BYTES) {
    const small = readSmallSource(entry, isSynthetic);
    if (small !== undefined) return small;
  }
  let handle: FileHandle;
  try {
    handle = await open(entry.path, openFlags(entry));
  } catch (error) {
    return openFailure(error);
  }
  const refuse = async (code: string, reason: string): Promise<Source> => {
    await handle.close().catch(() => undefined);
    return { kind: "refused", code, reason };
  };
  let stats: BigIntStats;
  try {
    stats = await handle.stat({ bigint: true });
  } catch (error) {
    return refuse(errorCodeOf(error), `cannot examine it: ${describeError(error)}`);
  }
  const swapped = swapOf(entry, stats, handle.fd);
  if (swapped) return refuse(ErrorCode.CHANGED, swapped);
  if (!isSynthetic(handle.fd, entry.path, stats.dev)) return { kind: "opened", stats, handle };
  try {
    const whole = await readWholeFile(handle);
    if (whole.kind === "read") {
      // Never `changed`: its stat says nothing about a content the kernel makes afresh for each read.
      return { kind: "whole", stats, size: BigInt(whole.data.length), data: whole.data, changed: false };
    }
    return {
      kind: "refused",
      code: "EFBIG",
      reason: `a file of a synthetic file system (procfs, sysfs...) that holds more than ${whole.limit} bytes is not copied`,
    };
  } catch (error) {
    return { kind: "refused", code: errorCodeOf(error), reason: `reading failed: ${describeError(error)}` };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * How streaming a file ended: `complete` (`changed`: see changedWhileRead), `shrank`
 * (EOF after `read` of the declared bytes), or `failed` (a read or the fstat after it).
 */
export type StreamOutcome =
  | { kind: "complete"; changed: boolean }
  | { kind: "shrank"; read: number; size: number }
  | { kind: "failed"; error: unknown; code: string; reason: string };

/**
 * Reads an opened file CHUNK_SIZE at a time, exactly the size it had at the open (if it
 * grew meanwhile, the rest is not read), passing each chunk to `onChunk` before reading
 * the next, so memory stays flat whatever the size and the reader goes only as fast as
 * the peer takes data. Each chunk is a fresh buffer (a message can wait in a call's
 * buffer after its write returns) from allocateBulkData (encoded without a copy). The
 * handle is closed however it ends; an exception from `onChunk` is passed on.
 */
export async function streamSource(
  source: Source & { kind: "opened" },
  onChunk: (chunk: Uint8Array) => Promise<void>,
): Promise<StreamOutcome> {
  const { handle, stats } = source;
  try {
    const size = Number(stats.size);
    let offset = 0;
    while (offset < size) {
      const length = Math.min(CHUNK_SIZE, size - offset);
      const buffer = allocateBulkData(length);
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(buffer, 0, length, offset));
      } catch (error) {
        const reason = `reading failed after ${offset} of ${size} bytes: ${describeError(error)}`;
        return { kind: "failed", error, code: errorCodeOf(error), reason };
      }
      if (bytesRead === 0) return { kind: "shrank", read: offset, size };
      await onChunk(bytesRead === length ? buffer : buffer.subarray(0, bytesRead));
      offset += bytesRead;
    }
    try {
      return { kind: "complete", changed: changedWhileRead(stats, await handle.stat({ bigint: true })) };
    } catch (error) {
      return { kind: "failed", error, code: errorCodeOf(error), reason: `cannot examine it: ${describeError(error)}` };
    }
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * Whether a file changed between two fstats of it taken around its read: its size,
 * mtime or ctime moved, as tar checks for "file changed as we read it". A write in place
 * moves mtime and ctime even when the size stays; nanosecond times make a change within
 * the same second visible on the file systems that keep them.
 */
export function changedWhileRead(before: BigIntStats, after: BigIntStats): boolean {
  return before.size !== after.size || before.mtimeNs !== after.mtimeNs || before.ctimeNs !== after.ctimeNs;
}

/** The text of a shrunk file's `skipped` reason or error. */
export function shrankReason(outcome: { read: number; size: number | bigint }): string {
  return `the file shrank to ${outcome.read} of ${outcome.size} bytes while it was read`;
}

// O_NONBLOCK: a FIFO swapped in since the walk cannot block the open. O_NOFOLLOW unless
// the walk followed the entry's own path: a symlink swapped in is refused (ELOOP).
function openFlags(entry: WalkEntry): number {
  return constants.O_RDONLY | constants.O_NONBLOCK | (entry.followed ? 0 : constants.O_NOFOLLOW);
}

function openFailure(error: unknown): Source & { kind: "refused" } {
  const code = errorCodeOf(error);
  if (code === "ELOOP")
    return { kind: "refused", code: ErrorCode.CHANGED, reason: "replaced by a symlink during the copy" };
  return { kind: "refused", code, reason: `cannot open it: ${describeError(error)}` };
}

/**
 * Why the opened file is not the one the walk saw, or undefined: it must still be the
 * regular file of the same device and inode, and where the walk found it (checked
 * through /proc/self/fd when /proc is there).
 */
function swapOf(entry: WalkEntry, stats: BigIntStats, fd: number): string | undefined {
  if (!stats.isFile() || !sameFile(stats, entry.stats)) return "replaced by another file during the copy";
  if (entry.realPath === undefined) return undefined;
  let actual: string | undefined;
  try {
    actual = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    // No /proc: the check is not available.
  }
  return actual !== undefined && actual !== entry.realPath
    ? "a directory on its path was replaced during the copy"
    : undefined;
}

// readSource for a small file, synchronously; undefined when it is to be opened
// asynchronously instead: it has grown past SMALL_FILE_BYTES since the walk, or it is
// synthetic (making its content can take a while, which must not hold the event loop).
function readSmallSource(entry: WalkEntry, isSynthetic: SyntheticFileCheck): Source | undefined {
  let fd: number;
  try {
    fd = openSync(entry.path, openFlags(entry));
  } catch (error) {
    return openFailure(error);
  }
  try {
    const stats = fstatSync(fd, { bigint: true });
    const swapped = swapOf(entry, stats, fd);
    if (swapped) return { kind: "refused", code: ErrorCode.CHANGED, reason: swapped };
    if (stats.size > SMALL_FILE_BYTES || isSynthetic(fd, entry.path, stats.dev)) return undefined;
    const data = Buffer.allocUnsafe(Number(stats.size));
    let offset = 0;
    while (offset < data.length) {
      const read = readSync(fd, data, offset, data.length - offset, offset);
      if (read === 0) break;
      offset += read;
    }
    const changed = changedWhileRead(stats, fstatSync(fd, { bigint: true }));
    return { kind: "whole", stats, size: stats.size, data: data.subarray(0, offset), changed };
  } catch (error) {
    return { kind: "refused", code: errorCodeOf(error), reason: `reading failed: ${describeError(error)}` };
  } finally {
    try {
      closeSync(fd);
    } catch {
      // A read-only descriptor: a failed close loses nothing.
    }
  }
}
