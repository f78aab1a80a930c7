// The one tree walker of both senders: lazy and depth-first, one directory read at a
// time, so the first entries are on their way while the rest of the tree has not been
// looked at, and memory stays bounded by the depth of the tree, not its size. The calls
// are synchronous: each is one short system call (a directory read fills a buffer of
// names), and a trip through libuv's thread pool per name costs more than the call.
import { type BigIntStats, type Dir, lstatSync, opendirSync, readlinkSync, statSync } from "node:fs";
import { realpath } from "node:fs/promises";
import { describeError, ErrorCode, errorCodeOf } from "@guestkit/protocol";
import { specialFileKind } from "./file-metadata.js";

/** An entry to send: a regular file, directory or symlink. */
export interface WalkEntry {
  kind: "entry";
  /** Absolute path. */
  path: string;
  /** Path under the root, "" for the root itself. */
  relativePath: string;
  /** lstat, or stat when the link was followed. */
  stats: BigIntStats;
  /** Set for symlinks sent as links. */
  linkTarget: string;
  /** The entry's own path was followed if it is a link: open it without O_NOFOLLOW. */
  followed: boolean;
  /**
   * Where a regular file must really be (the root's realpath joined with the entry's
   * path), for readSource to notice a directory on the way swapped for a symlink during
   * the walk; see WalkPolicy.checkLocation.
   */
  realPath: string | undefined;
}

/** An entry left out while the walk goes on (the root: it cannot be copied). */
export interface WalkSkipped {
  kind: "skipped";
  path: string;
  relativePath: string;
  code: string;
  reason: string;
}

export type WalkItem = WalkEntry | WalkSkipped;

/** How to walk. */
export interface WalkPolicy {
  /** Treat a symlink as what it points to; a link to a directory is walked into. */
  followLinks: boolean;
  /** Follow the root if it is a link, even without followLinks (`link/` names the directory). */
  followRoot?: boolean;
  /**
   * Check that each file opened is where the walk found it, not reached through a
   * directory swapped for a symlink since (never when following links, where being
   * elsewhere is expected). For a sender with more rights than the tree's owner: the
   * agent runs as root, and a user who owns the tree could otherwise make it send any
   * file. It costs a readlink of /proc/self/fd per file, which a sender reading its own
   * user's files does not need to pay.
   */
  checkLocation?: boolean;
}

/** Whether two stats describe the same file system object: a directory seen again, a file not swapped. */
export function sameFile(a: BigIntStats, b: BigIntStats): boolean {
  return a.ino === b.ino && a.dev === b.dev;
}

// How long the walk and its consumer may run before the walk lets other work on the
// event loop in: small files are read synchronously and the peer rarely pushes back, so
// without this a large tree would hold the event loop (other calls) for seconds.
const MAX_TURN_MS = 10;

interface OpenDirectory {
  path: string;
  relativePath: string;
  dir: Dir;
  stats: BigIntStats;
}

/**
 * Yields `root` itself (relativePath "") and, if it is a directory, everything under it,
 * depth-first, each directory before its contents, in the order the file system lists
 * them. A root that cannot be examined throws; everything else that cannot be sent
 * comes out as `skipped` and the walk goes on: a FIFO, socket or device (never opened),
 * an unreadable entry, a name that is not UTF-8, a directory that is already on the
 * current path (a followed symlink or a bind mount pointing back up the tree: ELOOP
 * rather than a walk forever). A directory is opened before it is yielded, so one that
 * cannot be read is skipped instead of being sent empty. Directories are closed when the
 * walk ends or its consumer stops early.
 */
export async function* walkTree(root: string, policy: WalkPolicy): AsyncGenerator<WalkItem> {
  const followRoot = policy.followLinks || policy.followRoot === true;
  const rootStats = followRoot ? statSync(root, { bigint: true }) : lstatSync(root, { bigint: true });
  // Where each file really is, to notice a directory swapped for a symlink mid-walk.
  const realRoot =
    policy.followLinks || policy.checkLocation !== true ? undefined : await realpath(root).catch(() => undefined);
  const realPrefix = realRoot?.replace(/\/$/, "");
  const realPathOf = (path: string) =>
    realPrefix === undefined ? undefined : realPrefix + path.slice(root === "/" ? 0 : root.length);
  const stack: OpenDirectory[] = [];
  try {
    const first = examine({ path: root, relativePath: "" }, rootStats, followRoot, stack, realPathOf);
    if (first.opened) stack.push(first.opened);
    yield first.item;
    let turnStarted = performance.now();
    while (stack.length > 0) {
      if (performance.now() - turnStarted > MAX_TURN_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        turnStarted = performance.now();
      }
      const top = stack[stack.length - 1] as OpenDirectory;
      const dirent = top.dir.readSync();
      if (dirent === null) {
        stack.pop();
        closeQuietly(top.dir);
        continue;
      }
      const child = {
        path: top.path === "/" ? `/${dirent.name}` : `${top.path}/${dirent.name}`,
        relativePath: top.relativePath === "" ? dirent.name : `${top.relativePath}/${dirent.name}`,
      };
      let stats: BigIntStats;
      try {
        stats = lstatSync(child.path, { bigint: true });
      } catch (error) {
        yield failed(child, error, "cannot examine it (it may have been removed during the copy)");
        continue;
      }
      const { item, opened } = examine(child, stats, policy.followLinks, stack, realPathOf);
      if (opened) stack.push(opened);
      yield item;
    }
  } finally {
    // Only directories not yet exhausted are still on the stack.
    for (const open of stack) closeQuietly(open.dir);
  }
}

function examine(
  child: { path: string; relativePath: string },
  lstats: BigIntStats,
  followLinks: boolean,
  onPath: readonly OpenDirectory[],
  realPathOf: (path: string) => string | undefined,
): { item: WalkItem; opened?: OpenDirectory } {
  const skip = (code: string, reason: string): { item: WalkItem } => ({
    item: { kind: "skipped", ...child, code, reason },
  });
  let stats = lstats;
  let linkTarget = "";
  if (stats.isSymbolicLink()) {
    if (followLinks) {
      try {
        stats = statSync(child.path, { bigint: true });
      } catch (error) {
        return skip(errorCodeOf(error), `the symlink leads nowhere: ${describeError(error)}`);
      }
    } else {
      try {
        linkTarget = readlinkSync(child.path);
      } catch (error) {
        return { item: failed(child, error, "cannot read the symlink") };
      }
    }
  }
  const special = specialFileKind(stats);
  if (special) return skip(ErrorCode.SPECIAL_FILE, `a ${special} is never opened`);
  const realPath = stats.isFile() ? realPathOf(child.path) : undefined;
  const item: WalkEntry = { kind: "entry", ...child, stats, linkTarget, followed: followLinks, realPath };
  if (!stats.isDirectory()) return { item };
  if (onPath.some((ancestor) => sameFile(ancestor.stats, stats))) {
    return skip("ELOOP", "a directory that contains itself (a symlink or mount points back up the tree)");
  }
  try {
    return { item, opened: { ...child, dir: opendirSync(child.path), stats } };
  } catch (error) {
    return { item: failed(child, error, "cannot read the directory") };
  }
}

function failed(child: { path: string; relativePath: string }, error: unknown, what: string): WalkSkipped {
  const code = errorCodeOf(error);
  // Node decodes names as UTF-8; a name that is not cannot be carried in the protocol
  // and does not round-trip to the file system either.
  if (code === "ENOENT" && child.path.includes("\uFFFD")) {
    return {
      kind: "skipped",
      ...child,
      code: "EILSEQ",
      reason: "the name is not valid UTF-8, which the protocol cannot carry",
    };
  }
  return { kind: "skipped", ...child, code, reason: `${what}: ${describeError(error)}` };
}

function closeQuietly(dir: Dir): void {
  try {
    dir.closeSync();
  } catch {
    // Closed already, or the walk is being abandoned: nothing left to release.
  }
}
