// Files and symlinks that appear under their final name complete or not at all: the
// content goes to a temporary name in the target's own directory (so the final rename
// stays on one file system), is fsynced, gets its owner, mode and times, and only then is
// renamed over the target. Until that rename, an existing target is untouched.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, lchown, lstat, lutimes, open, rename, symlink, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Timestamp } from "./file-metadata.js";
import { checkTimeKept, nowArgument, timeArgument, timeMayBeClamped } from "./file-times.js";
import { makeParents } from "./make-parents.js";

/** What is applied to an entry when it is committed. */
export interface EntryAttributes {
  /** Exact permission bits (setuid/setgid/sticky included); ignored for symlinks. */
  mode: number;
  /** Set only when present. */
  owner?: { uid: number; gid: number };
  /** Set only when present; otherwise the entry keeps the time of its creation. */
  mtime?: Timestamp;
}

/** The infix of every temporary name, so leftovers from a crashed agent can be recognised. */
export const TEMP_MARKER = ".guestkit-";

// Room for the marker and random part within NAME_MAX (255 bytes).
const MAX_BASE_BYTES = 200;

// Unique per agent process; the counter makes each name unique within it. Random bytes
// per file cost more than the rest of naming it, for nothing: O_EXCL refuses a clash anyway.
const processTag = randomBytes(6).toString("hex");
let temporaryCounter = 0;

/** A temporary name next to `target`: `.NAME.guestkit-RANDOM-N`. */
export function temporaryNameFor(target: string): string {
  let base = basename(target);
  while (Buffer.byteLength(base) > MAX_BASE_BYTES) base = base.slice(0, -1);
  temporaryCounter += 1;
  return join(dirname(target), `.${base}${TEMP_MARKER}${processTag}-${temporaryCounter}`);
}

/** A file being received under a temporary name. */
export class StagedFile {
  readonly target: string;
  readonly #temporary: string;
  readonly #handle: FileHandle;
  #closed = false;

  private constructor(target: string, temporary: string, handle: FileHandle) {
    this.target = target;
    this.#temporary = temporary;
    this.#handle = handle;
  }

  /** Creates the parents of `target` and an empty temporary file beside it (mode 0600 until commit). */
  static async create(target: string, knownDirectories?: Set<string>): Promise<StagedFile> {
    await makeParents(dirname(target), knownDirectories);
    const temporary = temporaryNameFor(target);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const handle = await open(temporary, flags, 0o600);
    return new StagedFile(target, temporary, handle);
  }

  /** Appends `bytes`; resolves once the kernel has them, so the caller can pace its reads. */
  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await this.#handle.write(bytes, offset, bytes.length - offset);
      offset += bytesWritten;
    }
  }

  /**
   * Makes the content final under the temporary name: owner, then mode (chown clears
   * setuid/setgid, so the mode comes after it), then times, checked to have been kept
   * (see checkTimeKept); fsync; close. Independent of other files, so several can run at
   * once. On failure the file is closed; `discard` removes it.
   */
  async prepare(attributes: EntryAttributes): Promise<void> {
    try {
      if (attributes.owner) await this.#handle.chown(attributes.owner.uid, attributes.owner.gid);
      await this.#handle.chmod(attributes.mode);
      if (attributes.mtime) {
        await this.#handle.utimes(nowArgument(), timeArgument(attributes.mtime));
        if (timeMayBeClamped(attributes.mtime)) {
          checkTimeKept(attributes.mtime, (await this.#handle.stat({ bigint: true })).mtimeNs);
        }
      }
      await this.#handle.sync();
    } finally {
      this.#closed = true;
      await this.#handle.close();
    }
  }

  /** Renames the prepared file over the target: the one step that changes what the target is. */
  async publish(): Promise<void> {
    await rename(this.#temporary, this.target);
  }

  /** Closes and removes the temporary file. Never rejects: it runs on paths that already failed. */
  async discard(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#handle.close().catch(() => undefined);
    }
    await unlink(this.#temporary).catch(() => undefined);
  }
}

/**
 * Creates or replaces `target` with a symlink to `linkTarget`: made under a temporary
 * name, given its owner and time, then renamed over the target, so there is no moment
 * when `target` is missing.
 */
export async function replaceWithSymlink(
  target: string,
  linkTarget: string,
  attributes: EntryAttributes,
): Promise<void> {
  await makeParents(dirname(target));
  const temporary = temporaryNameFor(target);
  await symlink(linkTarget, temporary);
  try {
    if (attributes.owner) await lchown(temporary, attributes.owner.uid, attributes.owner.gid);
    if (attributes.mtime) {
      await lutimes(temporary, nowArgument(), timeArgument(attributes.mtime));
      if (timeMayBeClamped(attributes.mtime)) {
        checkTimeKept(attributes.mtime, (await lstat(temporary, { bigint: true })).mtimeNs);
      }
    }
    await rename(temporary, target);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}
