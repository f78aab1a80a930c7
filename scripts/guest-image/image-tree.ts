// The image's file tree before it is written: entries keyed by path, parent
// directories added on demand, sorted on output so the archive is reproducible.
import { posix } from "node:path";
import type { TreeEntry } from "./cpio.ts";

/** A file tree under construction. */
export class ImageTree {
  readonly #entries = new Map<string, TreeEntry>();

  /** Adds a directory (and its parents). */
  dir(path: string, mode = 0o755): void {
    const clean = normalize(path);
    if (clean === "" || this.#entries.has(clean)) return;
    this.dir(posix.dirname(clean) === "." ? "" : posix.dirname(clean));
    this.#entries.set(clean, { type: "dir", path: clean, mode });
  }

  /** Adds a file copied from `source` on this machine. */
  file(path: string, source: string, mode: number): void {
    this.#add({ type: "file", path: normalize(path), mode: mode & 0o7777, source });
  }

  /** Adds a file with the given contents. */
  data(path: string, data: Buffer | string, mode = 0o644): void {
    this.#add({ type: "file", path: normalize(path), mode, data: Buffer.from(data) });
  }

  symlink(path: string, target: string): void {
    this.#add({ type: "symlink", path: normalize(path), target });
  }

  /** Adds a character device node (the kernel needs /dev/console before /dev is mounted). */
  chardev(path: string, mode: number, major: number, minor: number): void {
    this.#add({ type: "chardev", path: normalize(path), mode, major, minor });
  }

  has(path: string): boolean {
    return this.#entries.has(normalize(path));
  }

  /** Every entry, parents before children, in a stable order. */
  entries(): TreeEntry[] {
    return [...this.#entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  #add(entry: TreeEntry): void {
    if (this.#entries.has(entry.path)) throw new Error(`image tree: ${entry.path} added twice`);
    const parent = posix.dirname(entry.path);
    if (parent !== ".") this.dir(parent);
    this.#entries.set(entry.path, entry);
  }
}

function normalize(path: string): string {
  const clean = posix.normalize(path).replace(/^\/+/, "").replace(/\/+$/, "");
  if (clean.startsWith("..")) throw new Error(`image tree: path escapes the root: ${path}`);
  return clean === "." ? "" : clean;
}
