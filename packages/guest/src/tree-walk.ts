// A lazy depth-first walk of a directory tree: one directory read at a time, so the
// first entries are on their way while the rest of the tree has not been looked at, and
// memory stays bounded by the depth of the tree, not its size. The calls are synchronous:
// each is one short system call (a directory read fills a buffer of names), and a trip
// through libuv's thread pool per name costs more than the call; the consumer bounds how
// long it runs between event-loop turns.
import { type BigIntStats, type Dir, lstatSync, opendirSync, readlinkSync, statSync } from "node:fs";
import { ErrorCode, errorCodeOf } from "@guestkit/protocol";
import { specialFileKind } from "./file-metadata.js";
import { describeError } from "./grpc-errors.js";

/** A directory the walk is inside of, already opened. */
export interface OpenDirectory {
  /** Absolute path. */
  path: string;
  /** Path as the host sees it: relative to the copy root, starting with the root's base name. */
  relativePath: string;
  dir: Dir;
  stats: BigIntStats;
}

/** An entry to send (a regular file, directory or symlink), or one that is left out. */
export type WalkItem =
  | {
      kind: "entry";
      path: string;
      relativePath: string;
      /** lstat, or stat when following links. */
      stats: BigIntStats;
      /** Set for symlinks sent as links. */
      linkTarget: string;
    }
  | { kind: "skipped"; path: string; relativePath: string; code: string; reason: string };

/** How to walk. */
export interface WalkOptions {
  /** Treat a symlink as what it points to; a link to a directory is walked into. */
  followLinks: boolean;
}

/** Identity of a file system object, to recognise a directory seen again through a link. */
export function identityOf(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}`;
}

/**
 * Yields everything under `root` (not `root` itself), depth-first, each directory before
 * its contents, in the order the file system lists them. A directory is opened before it
 * is yielded, so one that cannot be read is reported as skipped instead of being sent
 * empty. A directory that is already on the current path (a symlink, with followLinks,
 * or a bind mount pointing back up the tree) is skipped with ELOOP rather than walked
 * forever. Directories are closed when the walk ends or its consumer stops early.
 */
export async function* walkTree(root: OpenDirectory, options: WalkOptions): AsyncGenerator<WalkItem> {
  const stack: OpenDirectory[] = [root];
  const onPath = new Set([identityOf(root.stats)]);
  try {
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as OpenDirectory;
      const dirent = top.dir.readSync();
      if (dirent === null) {
        stack.pop();
        onPath.delete(identityOf(top.stats));
        closeQuietly(top.dir);
        continue;
      }
      const child = {
        path: top.path === "/" ? `/${dirent.name}` : `${top.path}/${dirent.name}`,
        relativePath: `${top.relativePath}/${dirent.name}`,
      };
      const { item, opened } = examine(child, onPath, options);
      if (opened) {
        stack.push(opened);
        onPath.add(identityOf(opened.stats));
      }
      yield item;
    }
  } finally {
    // Only directories not yet exhausted are still on the stack.
    for (const open of stack) closeQuietly(open.dir);
  }
}

function examine(
  child: { path: string; relativePath: string },
  onPath: ReadonlySet<string>,
  options: WalkOptions,
): { item: WalkItem; opened?: OpenDirectory } {
  const skip = (code: string, reason: string): { item: WalkItem } => ({
    item: { kind: "skipped", ...child, code, reason },
  });
  const failed = (error: unknown, what: string) => {
    const code = errorCodeOf(error);
    // Node decodes names as UTF-8; a name that is not cannot be carried in the protocol
    // and does not round-trip to the file system either.
    if (code === "ENOENT" && child.path.includes("\uFFFD")) {
      return skip("EILSEQ", "the name is not valid UTF-8, which the protocol cannot carry");
    }
    return skip(code, `${what}: ${describeError(error)}`);
  };

  let stats: BigIntStats;
  try {
    stats = lstatSync(child.path, { bigint: true });
  } catch (error) {
    return failed(error, "cannot examine it (it may have been removed during the copy)");
  }
  let linkTarget = "";
  if (stats.isSymbolicLink()) {
    if (options.followLinks) {
      try {
        stats = statSync(child.path, { bigint: true });
      } catch (error) {
        return skip(errorCodeOf(error), `the symlink leads nowhere: ${describeError(error)}`);
      }
    } else {
      try {
        linkTarget = readlinkSync(child.path);
      } catch (error) {
        return failed(error, "cannot read the symlink");
      }
    }
  }
  const special = specialFileKind(stats);
  if (special) return skip(ErrorCode.SPECIAL_FILE, `a ${special} is never opened`);
  const item: WalkItem = { kind: "entry", ...child, stats, linkTarget };
  if (!stats.isDirectory()) return { item };
  if (onPath.has(identityOf(stats))) {
    return skip("ELOOP", "a directory that contains itself (a symlink or mount points back up the tree)");
  }
  try {
    const dir = opendirSync(child.path);
    return { item, opened: { ...child, dir, stats } };
  } catch (error) {
    return failed(error, "cannot read the directory");
  }
}

function closeQuietly(dir: Dir): void {
  try {
    dir.closeSync();
  } catch {
    // Closed already, or the walk is being abandoned: nothing left to release.
  }
}
