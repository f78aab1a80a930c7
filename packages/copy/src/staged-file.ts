// Files and symlinks that appear under their final name complete or not at all: the
// content goes to a temporary name in the target's own directory (so the final rename
// stays on one file system), gets its owner, mode and times, is fsynced where that is
// wanted, and only then is renamed over the target. Until that rename, an existing
// target is untouched. The calls on a staged file other than its data writes and fsync
// are synchronous: each is one quick system call, where a thread-pool round trip per
// call cost a tree of small files more than the calls did (bench/, node --cpu-prof).
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsync,
  futimesSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  openSync,
  renameSync,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  write,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { errnoOf } from "@guestkit/protocol";
import { EntryError } from "./entry-error.js";
import { checkTimeKept, nowArgument, type Timestamp, timeArgument, timeMayBeClamped } from "./timestamp.js";

/** What is applied to an entry when it is committed; what is absent is left as it is. */
export interface EntryAttributes {
  /** Exact permission bits (setuid/setgid/sticky included); ignored for symlinks. */
  mode?: number;
  owner?: { uid: number; gid: number };
  /** Otherwise the entry keeps the time of its creation. */
  mtime?: Timestamp;
}

/** The infix of every temporary name, so leftovers of a crashed copy can be recognised. */
export const TEMP_MARKER = ".guestkit-";

// Room for the marker and the tag within NAME_MAX (255 bytes).
const MAX_BASE_BYTES = 200;

// Unique per process; the counter makes each name unique within it. Random bytes per
// file cost more than the rest of naming it, for nothing: O_EXCL refuses a clash anyway.
const processTag = randomBytes(6).toString("hex");
let temporaryCounter = 0;

/** A temporary name next to `target`: `.NAME.guestkit-TAG-N`, dot-prefixed to stay out of sight. */
export function temporaryNameFor(target: string): string {
  let base = basename(target);
  while (Buffer.byteLength(base) > MAX_BASE_BYTES) base = base.slice(0, -1);
  temporaryCounter += 1;
  return join(dirname(target), `.${base}${TEMP_MARKER}${processTag}-${temporaryCounter}`);
}

const TEMP_FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** A file being received under a temporary name (mode 0600 until it is committed). */
export class StagedFile {
  readonly target: string;
  /** The entry's path as the sender named it, for errors. */
  readonly entryPath: string;
  readonly #temporary: string;
  #fd: number | undefined;

  /** Creates the empty temporary file beside `target`, whose parent must exist. */
  constructor(target: string, entryPath: string) {
    this.target = target;
    this.entryPath = entryPath;
    this.#temporary = temporaryNameFor(target);
    try {
      this.#fd = openSync(this.#temporary, TEMP_FILE_FLAGS, 0o600);
    } catch (error) {
      throw EntryError.io(error, entryPath);
    }
  }

  /** Appends `bytes`; resolves once the kernel has them, so the caller can pace its reads. */
  async write(bytes: Uint8Array): Promise<void> {
    const fd = this.#open();
    let offset = 0;
    while (offset < bytes.length) {
      offset += await new Promise<number>((resolve, reject) =>
        write(fd, bytes, offset, bytes.length - offset, null, (error, written) =>
          error ? reject(EntryError.io(error, this.entryPath)) : resolve(written),
        ),
      );
    }
  }

  /** Appends `chunks` with synchronous calls: for a small file, gathered whole. */
  writeSync(chunks: readonly Uint8Array[]): void {
    const fd = this.#open();
    try {
      for (const chunk of chunks) {
        let offset = 0;
        while (offset < chunk.length) offset += writeSync(fd, chunk, offset, chunk.length - offset);
      }
    } catch (error) {
      throw EntryError.io(error, this.entryPath);
    }
  }

  /**
   * Owner, then mode (chown clears setuid/setgid, so the mode comes after it), then the
   * time, checked to have been kept (see checkTimeKept).
   */
  setAttributes(attributes: EntryAttributes): void {
    const fd = this.#open();
    try {
      if (attributes.owner) fchownSync(fd, attributes.owner.uid, attributes.owner.gid);
      if (attributes.mode !== undefined) fchmodSync(fd, attributes.mode);
      if (attributes.mtime) {
        futimesSync(fd, nowArgument(), timeArgument(attributes.mtime));
        if (timeMayBeClamped(attributes.mtime))
          checkTimeKept(attributes.mtime, fstatSync(fd, { bigint: true }).mtimeNs);
      }
    } catch (error) {
      throw EntryError.io(error, this.entryPath);
    }
  }

  /** Flushes the content to disk. Resolves to the error instead of rejecting. */
  sync(): Promise<unknown> {
    const fd = this.#open();
    return new Promise((resolve) =>
      fsync(fd, (error) => resolve(error ? EntryError.io(error, this.entryPath) : undefined)),
    );
  }

  /** Closes the file and renames it over the target: the one step that changes what the target is. */
  publish(): void {
    const fd = this.#open();
    this.#fd = undefined;
    try {
      closeSync(fd);
    } catch (error) {
      throw EntryError.io(error, this.entryPath);
    }
    renameIntoPlace(this.#temporary, this.target, this.entryPath);
  }

  /** Closes and removes the temporary file. Never throws: it runs on paths that already failed. */
  discard(): void {
    if (this.#fd !== undefined) quietly(() => closeSync(this.#fd as number));
    this.#fd = undefined;
    quietly(() => unlinkSync(this.#temporary));
  }

  #open(): number {
    if (this.#fd === undefined) throw EntryError.protocol(this.entryPath, "the file was already committed");
    return this.#fd;
  }
}

/**
 * Creates or replaces `target` with a symlink to `linkTarget`: made under a temporary
 * name, given its owner and time, then renamed over the target, so there is no moment
 * when `target` is missing.
 */
export function replaceWithSymlink(
  target: string,
  linkTarget: string,
  attributes: EntryAttributes,
  entryPath: string,
): void {
  const temporary = temporaryNameFor(target);
  try {
    symlinkSync(linkTarget, temporary);
    try {
      if (attributes.owner) lchownSync(temporary, attributes.owner.uid, attributes.owner.gid);
      if (attributes.mtime) {
        lutimesSync(temporary, nowArgument(), timeArgument(attributes.mtime));
        if (timeMayBeClamped(attributes.mtime)) {
          checkTimeKept(attributes.mtime, lstatSync(temporary, { bigint: true }).mtimeNs);
        }
      }
    } catch (error) {
      throw EntryError.io(error, entryPath);
    }
    renameIntoPlace(temporary, target, entryPath);
  } catch (error) {
    quietly(() => unlinkSync(temporary));
    throw EntryError.io(error, entryPath);
  }
}

/** Owner, mode and time of a directory whose contents are complete (see setAttributes). */
export function setDirectoryAttributes(path: string, attributes: EntryAttributes, entryPath: string): void {
  try {
    if (attributes.owner) chownSync(path, attributes.owner.uid, attributes.owner.gid);
    if (attributes.mode !== undefined) chmodSync(path, attributes.mode);
    if (attributes.mtime) {
      utimesSync(path, nowArgument(), timeArgument(attributes.mtime));
      if (timeMayBeClamped(attributes.mtime)) checkTimeKept(attributes.mtime, statSync(path, { bigint: true }).mtimeNs);
    }
  } catch (error) {
    throw EntryError.io(error, entryPath);
  }
}

function renameIntoPlace(temporary: string, target: string, entryPath: string): void {
  try {
    renameSync(temporary, target);
  } catch (error) {
    const errno = errnoOf(error);
    // rename(2) refuses to put a non-directory over a directory.
    if (errno === "EISDIR" || errno === "ENOTEMPTY" || errno === "EEXIST") {
      throw new EntryError(
        "destination",
        errno,
        entryPath,
        `cannot overwrite directory ${target} with a non-directory`,
        {
          cause: error,
        },
      );
    }
    throw EntryError.io(error, entryPath);
  }
}

function quietly(action: () => void): void {
  try {
    action();
  } catch {
    // Already failing or already gone: nothing more to clean up.
  }
}
