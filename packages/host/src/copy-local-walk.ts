// Walks a local tree for an upload, one entry at a time. Directories are read as a
// stream (opendir), never listed whole, so memory grows with the depth of the tree,
// not with its size or with the size of its biggest directory. Reading the next names
// and lstat-ing an entry are synchronous: each is one short system call, and going
// through the thread pool for it costs more than the call (the caller bounds how long it
// runs between event-loop turns).

import { type BigIntStats, type Dir, lstatSync, opendirSync, statSync } from "node:fs";
import { lstat, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode, errorCodeOf } from "@guestkit/protocol";

/** One entry of a local tree, in pre-order (a directory before its contents). */
export type LocalEntry =
  | { kind: "file" | "dir"; relPath: string; absPath: string; stats: BigIntStats }
  | { kind: "symlink"; relPath: string; absPath: string; stats: BigIntStats; linkTarget: string }
  | { kind: "skipped"; relPath: string; absPath: string; reason: string; code: string };

/** Options of walkLocalTree. */
export interface LocalWalkOptions {
  /** Report what links point to instead of the links. */
  followLinks: boolean;
  /** Follow the root if it is a link, even without followLinks (`link/` names the directory). */
  followRoot?: boolean;
}

interface OpenDir {
  dir: Dir;
  relPath: string;
  absPath: string;
  /** dev:ino, to refuse a directory that contains itself through a followed link. */
  id: string;
}

/**
 * Yields `root` itself (relPath "") and, if it is a directory, everything under it.
 * Entries that cannot be read, FIFOs, sockets, devices and link loops come out as
 * `skipped` and the walk goes on. The root must be readable: its failure throws.
 */
export async function* walkLocalTree(root: string, options: LocalWalkOptions): AsyncGenerator<LocalEntry> {
  const followRoot = options.followLinks || options.followRoot === true;
  const rootStats = followRoot ? await stat(root, { bigint: true }) : await lstat(root, { bigint: true });
  const open: OpenDir[] = [];
  try {
    const first = await describe(root, "", rootStats);
    yield first;
    if (first.kind === "dir") open.push(openDir(root, "", rootStats));
    while (open.length > 0) {
      const top = open[open.length - 1] as OpenDir;
      const dirent = top.dir.readSync();
      if (dirent === null) {
        open.pop();
        top.dir.closeSync();
        continue;
      }
      const relPath = top.relPath === "" ? dirent.name : `${top.relPath}/${dirent.name}`;
      const absPath = join(top.absPath, dirent.name);
      let stats: BigIntStats;
      try {
        stats = lstatSync(absPath, { bigint: true });
        if (options.followLinks && stats.isSymbolicLink()) stats = statSync(absPath, { bigint: true });
      } catch (error) {
        yield { kind: "skipped", relPath, absPath, reason: describeError(error), code: errorCodeOf(error) };
        continue;
      }
      const entry = await describe(absPath, relPath, stats);
      if (entry.kind !== "dir") {
        yield entry;
        continue;
      }
      const id = `${stats.dev}:${stats.ino}`;
      if (open.some((ancestor) => ancestor.id === id)) {
        yield { kind: "skipped", relPath, absPath, reason: "symlink loop: directory contains itself", code: "ELOOP" };
        continue;
      }
      let child: OpenDir;
      try {
        child = openDir(absPath, relPath, stats);
      } catch (error) {
        yield { kind: "skipped", relPath, absPath, reason: describeError(error), code: errorCodeOf(error) };
        continue;
      }
      open.push(child);
      yield entry;
    }
  } finally {
    // An abandoned walk (abort, failure) must not leak directory handles.
    for (const entry of open) {
      try {
        entry.dir.closeSync();
      } catch {
        // Closing a directory we only read: nothing is lost if it fails.
      }
    }
  }
}

async function describe(absPath: string, relPath: string, stats: BigIntStats): Promise<LocalEntry> {
  if (stats.isFile()) return { kind: "file", relPath, absPath, stats };
  if (stats.isDirectory()) return { kind: "dir", relPath, absPath, stats };
  if (stats.isSymbolicLink()) {
    try {
      return { kind: "symlink", relPath, absPath, stats, linkTarget: await readlink(absPath) };
    } catch (error) {
      return { kind: "skipped", relPath, absPath, reason: describeError(error), code: errorCodeOf(error) };
    }
  }
  return {
    kind: "skipped",
    relPath,
    absPath,
    reason: "not a regular file, directory or symlink",
    code: ErrorCode.SPECIAL_FILE,
  };
}

// Synchronous, like the lstat of each entry: one quick system call, where a thread-pool
// round trip per directory cost a tree of many small directories more than the call.
function openDir(absPath: string, relPath: string, stats: BigIntStats): OpenDir {
  // A small buffer: entries are consumed one by one, and deep trees keep one Dir per level.
  return { dir: opendirSync(absPath, { bufferSize: 32 }), relPath, absPath, id: `${stats.dev}:${stats.ino}` };
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
