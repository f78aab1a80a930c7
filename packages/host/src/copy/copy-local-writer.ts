// The host's path policy for the copy engine's TreeWriter: where the entries of a
// download land in the local destination, and the refusal of anything that would land
// outside it. Everything here distrusts the guest: names and link targets are checked
// (path-safety.ts), every directory an entry goes through is checked to be a real
// directory and not a symlink (whether the link came in this transfer or was already
// there), and an entry must arrive after its directory. The writer does the rest as for
// the agent: temp names, commits in order, directories finished deepest first. No fsync:
// a download is as durable as any other file the user's programs write.
//
// State is bounded by the depth of the tree, not its size: the writer's stack of open
// directories. A directory entered again later (a guest sending entries out of order)
// has its mode and time restored when it is left again.
import { type BigIntStats, chmodSync, lstatSync } from "node:fs";
import { lstat } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import {
  type EntryAttributes,
  EntryError,
  type EntryKind,
  type EntryLocation,
  type OpenDirectory,
  type PathPolicy,
  splitNanoseconds,
} from "@guestkit/copy";
import type { CopyFromGuestHeader } from "@guestkit/protocol";
import { cutText, errnoOf, MAX_GUEST_PATH, MAX_QUOTED_PATH } from "@guestkit/protocol";
import { describeLocalError } from "../guest-error.js";
import { type DestinationSpec, type DestinationState, placeCopy, type SourceSpec } from "./copy-destination.js";
import { CopyError } from "./copy-error.js";
import { linkTargetProblem, sanitizeMode, splitEntryPath } from "./path-safety.js";

/** What the destination policy needs to know about the copy. */
export interface DestinationPolicyOptions {
  source: SourceSpec;
  /** The source's own name: what it is called inside an existing destination directory. */
  baseName: string;
  /** The destination, with its path absolute and already resolved through links (the user's own path). */
  destination: DestinationSpec;
  destinationState: DestinationState;
  preserveOwnership: boolean;
  keepSetuid: boolean;
}

/** Entries of a download under the local destination; the first one is the copy root. */
export class DestinationPolicy implements PathPolicy<CopyFromGuestHeader> {
  readonly durable = false;
  readonly followLinks = false;
  readonly #options: DestinationPolicyOptions;
  #target = "";
  #rootName: string | undefined;
  #rootKind: EntryKind | undefined;

  constructor(options: DestinationPolicyOptions) {
    this.#options = options;
  }

  /** The copy root has arrived: a transfer without it copied nothing at all. */
  get hasRoot(): boolean {
    return this.#rootName !== undefined;
  }

  async locate(header: CopyFromGuestHeader, kind: EntryKind): Promise<EntryLocation> {
    const names = entryNames(header.path);
    if (this.#rootName === undefined) return this.#locateRoot(header, names, kind);
    if (names[0] !== this.#rootName) {
      throw EntryError.unsafe(
        header.path,
        `outside the copied tree (its first name is not ${JSON.stringify(this.#rootName)})`,
      );
    }
    if (names.length === 1) throw EntryError.protocol(header.path, "the copy root was sent twice");
    if (this.#rootKind !== "dir")
      throw EntryError.unsafe(header.path, "an entry inside a root that is not a directory");
    const rel = names.slice(1);
    // A link's own directory is `rel.length - 1` levels below the copy root.
    return { local: join(this.#target, ...rel), linkDepth: rel.length - 1 };
  }

  /** Checks every directory from `top` down to `parent`: each must already be a real directory. */
  enterParents(
    parent: string,
    top: OpenDirectory | undefined,
    entryPath: string,
    enter: (directory: OpenDirectory) => void,
  ): void {
    // The root's own parent is the destination, resolved and checked by the caller.
    if (!top) return;
    let local = top.local;
    for (const name of relative(top.local, parent).split("/")) {
      local = join(local, name);
      const rel = relative(this.#target, local);
      let stats: BigIntStats;
      try {
        stats = lstatSync(local, { bigint: true });
      } catch (error) {
        if (errnoOf(error) === "ENOENT") throw EntryError.protocol(entryPath, `arrived before its directory ${rel}`);
        throw EntryError.io(error, entryPath);
      }
      if (stats.isSymbolicLink()) throw EntryError.unsafe(entryPath, `goes through the symbolic link ${rel}`);
      if (!stats.isDirectory()) throw EntryError.unsafe(entryPath, `goes through ${rel}, which is not a directory`);
      // Entered again (the guest sent entries out of order): restore what it had on
      // leaving, and meanwhile make sure we can write into it.
      const mode = Number(stats.mode) & 0o7777;
      if ((mode & 0o700) !== 0o700) chmodSync(local, mode | 0o700);
      const mtime = splitNanoseconds(stats.mtimeNs);
      enter({ local, path: rel, final: { mode, ...(mtime.seconds >= 0n ? { mtime } : {}) } });
    }
  }

  attributes(header: CopyFromGuestHeader, kind: EntryKind): EntryAttributes {
    return {
      ...(kind === "symlink" ? {} : { mode: sanitizeMode(header.mode, this.#options.keepSetuid) }),
      ...(this.#options.preserveOwnership ? { owner: { uid: header.uid, gid: header.gid } } : {}),
      mtime: { seconds: header.mtime, nanos: header.mtimeNanos },
    };
  }

  linkProblem(target: string, linkDepth: number): string | undefined {
    const problem = linkTargetProblem(target, linkDepth);
    return problem && `${problem}: ${JSON.stringify(cutText(target, MAX_QUOTED_PATH))}`;
  }

  async #locateRoot(header: CopyFromGuestHeader, names: string[], kind: EntryKind): Promise<EntryLocation> {
    if (names.length !== 1) throw EntryError.protocol(header.path, "the first entry must be the copy root itself");
    const { source, baseName, destination, destinationState } = this.#options;
    const placement = placeCopy(source, kind === "dir", baseName, destination, destinationState);
    if (placement.createsDestination) {
      const parent = await lstat(dirname(placement.target)).catch(() => undefined);
      if (!parent?.isDirectory()) {
        throw new CopyError("destination", `directory ${dirname(placement.target)} does not exist`, {
          path: dirname(placement.target),
        });
      }
    }
    this.#target = placement.target;
    this.#rootName = names[0] as string;
    this.#rootKind = kind;
    // A single link is contained by the directory that receives it.
    return { local: this.#target, linkDepth: 0, merge: kind === "dir" && placement.mergeIntoExisting };
  }
}

/** The CopyError of a refused or failed entry; other errors pass through. */
export function copyErrorOf(error: unknown): unknown {
  if (!(error instanceof EntryError)) return error;
  const quoted = JSON.stringify(cutText(error.path, MAX_QUOTED_PATH));
  // Paths of entries refused before they were checked may be any length.
  const path = cutText(error.path, MAX_GUEST_PATH);
  switch (error.reason) {
    case "protocol":
      return new CopyError("protocol", `protocol error${path === "" ? "" : ` at entry ${quoted}`}: ${error.problem}`, {
        path,
      });
    case "unsafe-entry":
      return new CopyError("unsafe-entry", `refused entry ${quoted}: ${error.problem}`, { path });
    case "size-mismatch":
      return new CopyError("size-mismatch", `${path}: ${error.problem}`, { path });
    case "destination":
      return new CopyError("destination", error.problem, { path, cause: error.cause });
    case "local-io": {
      const errno = errnoOf(error.cause);
      return new CopyError("local-io", `cannot write ${path}: ${describeLocalError(error.cause ?? error)}`, {
        path,
        ...(errno === "" ? {} : { errno }),
        cause: error.cause,
      });
    }
  }
}

/** The names of a guest entry path, or an UNSAFE_ENTRY error. */
function entryNames(path: string): string[] {
  // The agent names the root "." when it is "/": allowed as the first name only.
  if (path === ".") return ["."];
  const dotRoot = path.startsWith("./");
  const split = splitEntryPath(dotRoot ? path.slice(2) : path);
  if ("problem" in split) throw EntryError.unsafe(path, split.problem);
  return dotRoot ? [".", ...split.names] : split.names;
}
