// Writes an uncompressed newc cpio archive, the format the kernel unpacks as its
// initramfs. Reproducible by construction: entries in sorted order, fixed inode
// numbers, owner root, one fixed mtime; the same tree gives the same bytes.
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";

/** One entry of the image's file tree. Paths are relative, without a leading slash. */
export type TreeEntry =
  | { type: "dir"; path: string; mode: number }
  | { type: "file"; path: string; mode: number; source: string }
  | { type: "file"; path: string; mode: number; data: Buffer }
  | { type: "symlink"; path: string; target: string }
  | { type: "chardev"; path: string; mode: number; major: number; minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/** Writes `entries` (already complete: parents before children) as a newc archive to `output`. */
export function writeCpio(output: string, entries: readonly TreeEntry[], mtime: number): number {
  const fd = openSync(output, "w");
  let offset = 0;
  const write = (bytes: Buffer) => {
    writeSync(fd, bytes);
    offset += bytes.length;
  };
  const pad = () => {
    const extra = (4 - (offset % 4)) % 4;
    if (extra) write(Buffer.alloc(extra));
  };
  const header = (ino: number, mode: number, nlink: number, size: number, name: string, rdev = [0, 0]) => {
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0] ?? 0, rdev[1] ?? 0, nameBytes.length, 0];
    write(Buffer.from(`070701${fields.map((field) => field.toString(16).padStart(8, "0")).join("")}`, "latin1"));
    write(nameBytes);
    pad();
  };
  try {
    let ino = 1;
    for (const entry of entries) {
      let data: Buffer | undefined;
      let mode: number;
      if (entry.type === "chardev") {
        header(ino++, S_IFCHR | entry.mode, 1, 0, entry.path, [entry.major, entry.minor]);
        continue;
      }
      if (entry.type === "dir") {
        mode = S_IFDIR | entry.mode;
      } else if (entry.type === "symlink") {
        mode = S_IFLNK | 0o777;
        data = Buffer.from(entry.target);
      } else {
        mode = S_IFREG | entry.mode;
        data = "data" in entry ? entry.data : readFileSync(entry.source);
      }
      header(ino++, mode, entry.type === "dir" ? 2 : 1, data?.length ?? 0, entry.path);
      if (data) {
        write(data);
        pad();
      }
    }
    header(0, 0, 1, 0, "TRAILER!!!");
  } finally {
    closeSync(fd);
  }
  return offset;
}
