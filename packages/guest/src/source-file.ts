// Opening a file to send it, without being tricked into reading something else: the
// walk saw a regular file, but by the time it is opened it may have been replaced by a
// FIFO (which would block the open forever), a device, or a symlink to a file the host
// should not get (the agent runs as root; the tree may belong to an unprivileged user).
// Also what the opened file is: an ordinary one, whose size is its content and whose
// stat before and after the read tells whether it changed meanwhile, or a synthetic one
// (procfs, sysfs: see the protocol package's synthetic-files.ts), read to EOF.
import type { BigIntStats } from "node:fs";
import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync } from "node:fs";
import { type FileHandle, open, readlink } from "node:fs/promises";
import { ErrorCode, errorCodeOf, SMALL_FILE_BYTES, type SyntheticFileCheck } from "@guestkit/protocol";
import { describeError } from "./grpc-errors.js";
import { identityOf } from "./tree-walk.js";

/**
 * The opened file and its stats as of the open, or why it was not opened. `synthetic`:
 * its size says nothing (procfs, sysfs), so it must be read to EOF.
 */
export type SourceFile =
  | { kind: "opened"; handle: FileHandle; stats: BigIntStats; synthetic: boolean }
  | { kind: "refused"; code: string; reason: string };

/** How to check what was opened. */
export interface OpenSourceOptions {
  /** The walk followed symlinks, so the final component may be one. */
  followLinks: boolean;
  /** Recognises synthetic files; one per transfer (see createSyntheticFileCheck). */
  isSynthetic: SyntheticFileCheck;
  /**
   * Where the file must really be (the copy root's realpath joined with the entry's
   * path). When the kernel says the opened file is elsewhere, a directory on the way was
   * swapped for a symlink during the walk. Checked through /proc/self/fd when /proc is
   * there; leave undefined when following links, where being elsewhere is expected.
   */
  realPath?: string;
}

/**
 * Opens `path` for reading with O_NONBLOCK (a FIFO cannot block the open) and, unless
 * following links, O_NOFOLLOW; then fstats the descriptor to be sure it is still the
 * regular file (same device and inode) that `seen` describes.
 */
export async function openSourceFile(path: string, seen: BigIntStats, options: OpenSourceOptions): Promise<SourceFile> {
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (options.followLinks ? 0 : constants.O_NOFOLLOW);
  let handle: FileHandle;
  try {
    handle = await open(path, flags);
  } catch (error) {
    const code = errorCodeOf(error);
    if (code === "ELOOP")
      return { kind: "refused", code: ErrorCode.CHANGED, reason: "replaced by a symlink during the copy" };
    return { kind: "refused", code, reason: `cannot open it: ${describeError(error)}` };
  }
  const refuse = async (code: string, reason: string): Promise<SourceFile> => {
    await handle.close().catch(() => undefined);
    return { kind: "refused", code, reason };
  };
  let stats: BigIntStats;
  try {
    stats = await handle.stat({ bigint: true });
  } catch (error) {
    return refuse(errorCodeOf(error), `cannot examine it: ${describeError(error)}`);
  }
  if (!stats.isFile() || identityOf(stats) !== identityOf(seen)) {
    return refuse(ErrorCode.CHANGED, "replaced by another file during the copy");
  }
  if (options.realPath !== undefined) {
    const actual = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => undefined);
    if (actual !== undefined && actual !== options.realPath) {
      return refuse(ErrorCode.CHANGED, "a directory on its path was replaced during the copy");
    }
  }
  return { kind: "opened", handle, stats, synthetic: options.isSynthetic(handle.fd, path, stats.dev) };
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

/**
 * A small file read whole, or why not, or `stream` when it is to go through
 * openSourceFile instead: it has grown past SMALL_FILE_BYTES since the walk, or it is
 * synthetic (its size says nothing, and making its content can take a while, which must
 * not hold the event loop). `data` is shorter than `stats.size` when the file shrank
 * while it was read; `changed` says it changed otherwise (see changedWhileRead).
 */
export type SmallSourceFile =
  | { kind: "read"; stats: BigIntStats; data: Buffer; changed: boolean }
  | { kind: "stream" }
  | { kind: "refused"; code: string; reason: string };

/** openSourceFile and reading the whole file, synchronously, with the same checks. */
export function readSmallSourceFile(path: string, seen: BigIntStats, options: OpenSourceOptions): SmallSourceFile {
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (options.followLinks ? 0 : constants.O_NOFOLLOW);
  let fd: number;
  try {
    fd = openSync(path, flags);
  } catch (error) {
    const code = errorCodeOf(error);
    if (code === "ELOOP")
      return { kind: "refused", code: ErrorCode.CHANGED, reason: "replaced by a symlink during the copy" };
    return { kind: "refused", code, reason: `cannot open it: ${describeError(error)}` };
  }
  try {
    let stats: BigIntStats;
    try {
      stats = fstatSync(fd, { bigint: true });
    } catch (error) {
      return { kind: "refused", code: errorCodeOf(error), reason: `cannot examine it: ${describeError(error)}` };
    }
    if (!stats.isFile() || identityOf(stats) !== identityOf(seen)) {
      return { kind: "refused", code: ErrorCode.CHANGED, reason: "replaced by another file during the copy" };
    }
    if (options.realPath !== undefined) {
      let actual: string | undefined;
      try {
        actual = readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        // No /proc: the check is not available, as in openSourceFile.
      }
      if (actual !== undefined && actual !== options.realPath) {
        return {
          kind: "refused",
          code: ErrorCode.CHANGED,
          reason: "a directory on its path was replaced during the copy",
        };
      }
    }
    if (stats.size > SMALL_FILE_BYTES || options.isSynthetic(fd, path, stats.dev)) return { kind: "stream" };
    const data = Buffer.allocUnsafe(Number(stats.size));
    let offset = 0;
    while (offset < data.length) {
      let read: number;
      try {
        read = readSync(fd, data, offset, data.length - offset, offset);
      } catch (error) {
        return {
          kind: "refused",
          code: errorCodeOf(error),
          reason: `reading failed after ${offset} of ${data.length} bytes: ${describeError(error)}`,
        };
      }
      if (read === 0) break;
      offset += read;
    }
    let after: BigIntStats;
    try {
      after = fstatSync(fd, { bigint: true });
    } catch (error) {
      return { kind: "refused", code: errorCodeOf(error), reason: `cannot examine it: ${describeError(error)}` };
    }
    return { kind: "read", stats, data: data.subarray(0, offset), changed: changedWhileRead(stats, after) };
  } finally {
    try {
      closeSync(fd);
    } catch {
      // A read-only descriptor: a failed close loses nothing.
    }
  }
}
