// How both senders describe a file system entry on the wire: permission bits with
// setuid/setgid/sticky kept, nanosecond mtimes split the way the protocol carries them,
// and the kind of entry.
import type { BigIntStats } from "node:fs";
import { FileType } from "@guestkit/protocol";
import { splitNanoseconds } from "./timestamp.js";

/** st_mode & 07777: permissions with setuid, setgid and sticky (so /tmp is 01777, not 0777). */
export function permissionBits(mode: number | bigint): number {
  return Number(BigInt(mode) & 0o7777n);
}

/**
 * The fields an entry's header (CopyFromGuestHeader) and start (CopyToGuestStart) share,
 * from its stats. `size` overrides a file's stat size: a synthetic file's is what was read.
 */
export interface EntryMetadata {
  mode: number;
  isDir: boolean;
  isSymlink: boolean;
  linkTarget: string;
  size: bigint;
  mtime: bigint;
  mtimeNanos: number;
  uid: number;
  gid: number;
}

/** The wire metadata of an entry (see EntryMetadata). */
export function entryMetadata(stats: BigIntStats, linkTarget = "", size?: bigint): EntryMetadata {
  const mtime = splitNanoseconds(stats.mtimeNs);
  return {
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

/** The protocol's FileType of an entry. */
export function fileTypeOf(stats: BigIntStats): FileType {
  if (stats.isFile()) return FileType.REGULAR;
  if (stats.isDirectory()) return FileType.DIRECTORY;
  if (stats.isSymbolicLink()) return FileType.SYMLINK;
  if (stats.isFIFO()) return FileType.FIFO;
  if (stats.isSocket()) return FileType.SOCKET;
  if (stats.isCharacterDevice()) return FileType.CHAR_DEVICE;
  if (stats.isBlockDevice()) return FileType.BLOCK_DEVICE;
  return FileType.UNSPECIFIED;
}

/**
 * What kind of special file this is ("FIFO", "socket", "character device", "block
 * device"), or undefined for regular files, directories and symlinks. Special files are
 * never opened: opening a FIFO blocks until a writer comes, and opening a device can
 * have side effects (a tape rewinds, a terminal becomes the controlling one).
 */
export function specialFileKind(stats: BigIntStats): string | undefined {
  if (stats.isFIFO()) return "FIFO";
  if (stats.isSocket()) return "socket";
  if (stats.isCharacterDevice()) return "character device";
  if (stats.isBlockDevice()) return "block device";
  return undefined;
}
