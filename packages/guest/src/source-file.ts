// Opening a file to send it, without being tricked into reading something else: the
// walk saw a regular file, but by the time it is opened it may have been replaced by a
// FIFO (which would block the open forever), a device, or a symlink to a file the host
// should not get (the agent runs as root; the tree may belong to an unprivileged user).
import type { BigIntStats } from "node:fs";
import { constants } from "node:fs";
import { type FileHandle, open, readlink } from "node:fs/promises";
import { describeError, errnoCode } from "./grpc-errors.js";
import { identityOf } from "./tree-walk.js";

/** Code of an entry that changed between the walk and the open. */
export const CHANGED_CODE = "CHANGED";

/** The opened file and its stats as of the open, or why it was not opened. */
export type SourceFile =
  | { kind: "opened"; handle: FileHandle; stats: BigIntStats }
  | { kind: "refused"; code: string; reason: string };

/** How to check what was opened. */
export interface OpenSourceOptions {
  /** The walk followed symlinks, so the final component may be one. */
  followLinks: boolean;
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
    const code = errnoCode(error) || "EIO";
    if (code === "ELOOP")
      return { kind: "refused", code: CHANGED_CODE, reason: "replaced by a symlink during the copy" };
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
    return refuse(errnoCode(error) || "EIO", `cannot examine it: ${describeError(error)}`);
  }
  if (!stats.isFile() || identityOf(stats) !== identityOf(seen)) {
    return refuse(CHANGED_CODE, "replaced by another file during the copy");
  }
  if (options.realPath !== undefined) {
    const actual = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => undefined);
    if (actual !== undefined && actual !== options.realPath) {
      return refuse(CHANGED_CODE, "a directory on its path was replaced during the copy");
    }
  }
  return { kind: "opened", handle, stats };
}
