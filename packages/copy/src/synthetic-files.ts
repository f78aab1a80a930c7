// Files whose size says nothing about what reading them gives, because the kernel makes
// their content when they are read: procfs reports 0 for nearly every file
// (/proc/cpuinfo), sysfs 4096 for every attribute whatever it holds (23 bytes for
// /sys/kernel/mm/transparent_hugepage/enabled); cgroup, debugfs, tracefs, securityfs,
// configfs and binfmt_misc files are the same kind. A copy that trusts st_size sends
// them empty, or takes the short read for a file that shrank. Both sides copy files they
// read locally (the agent for downloads, the host for uploads), so both recognise them
// here and read them to EOF, whole, before the header that declares their size.
//
// They are recognised by the file system's magic number (statfs f_type), not by their
// size: a sysfs attribute (4096 declared, 23 read) looks exactly like a regular file
// that shrank while it was read, and procfs's 0 like an empty file, so a size rule
// would either read every ordinary file to EOF (and never notice a real shrink) or miss
// them. The file system type is exact, costs one statfs per file system per transfer,
// and leaves ordinary files on the path where a short read is what it looks like.
import { statfsSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { MAX_SYNTHETIC_FILE_BYTES } from "@guestkit/protocol";

// statfs f_type values, from the kernel's include/uapi/linux/magic.h.
const SYNTHETIC_FILE_SYSTEMS: ReadonlySet<number> = new Set([
  0x9fa0, // proc
  0x62656572, // sysfs
  0x0027e0eb, // cgroup
  0x63677270, // cgroup2
  0x64626720, // debugfs
  0x74726163, // tracefs
  0x73636673, // securityfs
  0x62656570, // configfs
  0x42494e4d, // binfmt_misc
]);

/** Tells whether an opened file is on a synthetic file system (see the file comment). */
export type SyntheticFileCheck = (fd: number, path: string, device: bigint) => boolean;

/**
 * A check that remembers each file system it has seen, by st_dev. Make one per transfer:
 * anonymous device numbers are reused once a file system is unmounted, so a process-wide
 * memory could take a new tmpfs for an old procfs. The statfs goes through
 * /proc/self/fd when /proc is there, so it describes the file that was opened even if
 * its path has been replaced since; when statfs fails, the file is taken as ordinary.
 */
export function createSyntheticFileCheck(): SyntheticFileCheck {
  const byDevice = new Map<bigint, boolean>();
  return (fd, path, device) => {
    let synthetic = byDevice.get(device);
    if (synthetic === undefined) {
      synthetic = SYNTHETIC_FILE_SYSTEMS.has(fileSystemType(fd, path));
      byDevice.set(device, synthetic);
    }
    return synthetic;
  };
}

function fileSystemType(fd: number, path: string): number {
  for (const candidate of [`/proc/self/fd/${fd}`, path]) {
    try {
      return statfsSync(candidate).type;
    } catch {
      // No /proc (or the path is gone): try the next way, else take it as ordinary.
    }
  }
  return 0;
}

/** What reading a synthetic file to EOF gave. */
export type WholeFile = { kind: "read"; data: Buffer } | { kind: "too-large"; limit: number };

// Bytes asked for per read: most synthetic files are a page or a few.
const READ_BYTES = 64 * 1024;

/**
 * Reads an opened file from where it is to EOF, sequentially (some synthetic files
 * cannot be read at an offset), keeping at most MAX_SYNTHETIC_FILE_BYTES: a file that
 * goes past it (/proc/kcore declares the whole address space) is `too-large`. Read
 * errors reject, with the errno of the read.
 */
export async function readWholeFile(handle: FileHandle, limit = MAX_SYNTHETIC_FILE_BYTES): Promise<WholeFile> {
  const parts: Buffer[] = [];
  let total = 0;
  for (;;) {
    // Always a whole buffer's worth: some files refuse reads of odd sizes
    // (/proc/PID/pagemap wants multiples of 8), so the read that goes past the limit is
    // a full one, and its surplus is what tells a file of exactly `limit` bytes from a
    // larger one.
    const buffer = Buffer.allocUnsafeSlow(READ_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, READ_BYTES, null);
    if (bytesRead === 0) break;
    total += bytesRead;
    if (total > limit) return { kind: "too-large", limit };
    parts.push(bytesRead === READ_BYTES ? buffer : buffer.subarray(0, bytesRead));
  }
  return { kind: "read", data: Buffer.concat(parts, total) };
}
