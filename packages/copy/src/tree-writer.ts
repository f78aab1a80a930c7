// The staged-file writer both receivers use: the agent for CopyToGuest, the host library
// for CopyFromGuest. It takes entries as begin (header), write (data)..., end, checks the
// framing and the header (entry-decode.ts), and commits each entry so that it appears
// complete or not at all (staged-file.ts), in stream order (commit-queue.ts). What
// differs between the two sides is a PathPolicy: where an entry lands, how its parents
// are made or checked, and which attributes it gets.
//
// A file of up to SMALL_FILE_BYTES is gathered in memory and written with synchronous
// calls when its `end` arrives: one event-loop turn instead of a thread-pool trip per
// call; a larger one streams to its temporary file. Nothing touches the final name of a
// file that never completes.
//
// Directories are created owner-only (0700), so nobody else sees a half-filled one and
// the writer can always write into it; their owner, mode and time are applied when the
// stream leaves them, after everything inside was renamed into place, so deepest first
// (writing into a directory changes its mtime; setting a directory's time does not touch
// its parent's). The directories open at once are a stack as deep as the tree, and a
// directory the stream comes back to is entered again through the policy.
import { constants, lstatSync, mkdirSync, statfsSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { dirname } from "node:path";
import { ErrorCode, errnoOf, SMALL_FILE_BYTES } from "@guestkit/protocol";
import { CommitQueue } from "./commit-queue.js";
import { type BatchEntry, boundedBatch, checkHeader, type EntryHeader, type EntryKind } from "./entry-decode.js";
import { EntryError } from "./entry-error.js";
import { type EntryAttributes, replaceWithSymlink, StagedFile, setDirectoryAttributes } from "./staged-file.js";

/** A directory the stream is in: its attributes are applied when the stream leaves it. */
export interface OpenDirectory {
  local: string;
  /** Its path as the sender named it, for errors. */
  path: string;
  /** Undefined leaves the directory as it is. */
  final: EntryAttributes | undefined;
}

/** Where an entry lands. */
export interface EntryLocation {
  local: string;
  /** How many directories lie between the containment root and a symlink's directory. */
  linkDepth: number;
  /** A directory entry for an existing directory that is merged into and left as it is. */
  merge?: boolean;
}

/** What differs between the receivers: see the file comment. */
export interface PathPolicy<Header extends EntryHeader> {
  /** fsync files before their rename, and their directories at the end. */
  readonly durable: boolean;
  /** An existing directory may be reached through a symlink (as `mkdir -p` allows). */
  readonly followLinks: boolean;
  /** Where `header` lands; throws when its path is refused. */
  locate(header: Header, kind: EntryKind): EntryLocation | Promise<EntryLocation>;
  /**
   * Makes or checks the directories from `top` (the innermost open one, if any) down to
   * `parent`, and passes to `enter` those whose attributes must be applied again on leaving.
   */
  enterParents(
    parent: string,
    top: OpenDirectory | undefined,
    entryPath: string,
    enter: (directory: OpenDirectory) => void,
  ): void | Promise<void>;
  /** The attributes `header` asks for; `created` says a directory is new. */
  attributes(header: Header, kind: EntryKind, created: boolean): EntryAttributes;
  /** Why a symlink's target is refused, or undefined. */
  linkProblem?(target: string, linkDepth: number): string | undefined;
  /** An entry was committed at `local`. */
  committed?(local: string, kind: EntryKind): void;
  /** The stream left `directory`, and its attributes were applied. */
  left?(directory: OpenDirectory): void;
}

type OpenEntry<Header> =
  | {
      kind: "file";
      header: Header;
      local: string;
      staged: StagedFile | undefined;
      chunks: Uint8Array[];
      received: bigint;
    }
  | { kind: "dir"; header: Header; local: string; merge: boolean }
  | { kind: "symlink"; header: Header; local: string }
  // The sender gave up on the file part-way (dropFile); its `end` is still to come.
  | { kind: "dropped"; header: Header };

// statfs f_type of the Linux file systems that live only in memory: the kernel's fsync
// there is a no-op, and nothing on them survives a crash, so there is nothing to flush.
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** One stream's entries on their way to disk. Feed it, then `finish` or, after a failure, `abort`. */
export class TreeWriter<Header extends EntryHeader = EntryHeader> {
  readonly #policy: PathPolicy<Header>;
  #entry: OpenEntry<Header> | undefined;
  readonly #open: OpenDirectory[] = [];
  readonly #commits = new CommitQueue();
  #entries = 0;
  #bytes = 0n;
  // Directories whose entries changed, fsynced once at the end so the renames are durable.
  readonly #touched = new Set<string>();
  // By directory: a tree has few directories and many files, so statfs once per directory.
  readonly #syncNeeded = new Map<string, boolean>();

  constructor(policy: PathPolicy<Header>) {
    this.#policy = policy;
  }

  /** Entries committed (a file counts once it is renamed into place). */
  get entriesWritten(): number {
    return this.#entries;
  }

  /** Bytes of the files committed. */
  get bytesWritten(): bigint {
    return this.#bytes;
  }

  /** An entry was begun and its `end` has not come yet. */
  get hasOpenEntry(): boolean {
    return this.#entry !== undefined;
  }

  /** The file being received, by the path its header gave. */
  get openFilePath(): string | undefined {
    return this.#entry?.kind === "file" ? this.#entry.header.path : undefined;
  }

  /** The failure of a commit that ran after its entry's `end`: it stops the stream. */
  get failure(): EntryError | undefined {
    const failure = this.#commits.failure;
    return failure && EntryError.io(failure.error, failure.path);
  }

  /** Starts an entry; throws an EntryError (or the policy's own error) when it is refused. */
  async begin(header: Header): Promise<EntryKind> {
    if (this.#entry) {
      throw EntryError.protocol(this.#entry.header.path, "a new start arrived before this entry's end message");
    }
    this.#throwIfFailed();
    const kind = checkHeader(header);
    const { local, linkDepth, merge } = await this.#policy.locate(header, kind);
    await this.#enter(dirname(local), header.path);
    if (kind === "file") {
      const staged = header.size > BigInt(SMALL_FILE_BYTES) ? new StagedFile(local, header.path) : undefined;
      this.#entry = { kind, header, local, staged, chunks: [], received: 0n };
      return kind;
    }
    if (kind === "dir") {
      this.#entry = { kind, header, local, merge: merge === true };
    } else {
      const problem = this.#policy.linkProblem?.(header.linkTarget, linkDepth);
      if (problem) throw EntryError.unsafe(header.path, problem);
      this.#entry = { kind, header, local };
    }
    return kind;
  }

  /** Data of the current file; more than its header declared is refused. */
  async write(bytes: Uint8Array): Promise<void> {
    const entry = this.#entry;
    if (!entry) throw EntryError.protocol("", "data arrived before any start message");
    this.#throwIfFailed();
    if (entry.kind !== "file") {
      const what = entry.kind === "dir" ? "a directory" : entry.kind === "symlink" ? "a symlink" : "a dropped file";
      throw EntryError.protocol(entry.header.path, `data arrived for ${what}`);
    }
    const received = entry.received + BigInt(bytes.length);
    if (received > entry.header.size) {
      throw sizeMismatch(entry.header.path, `more data than the declared size of ${entry.header.size} bytes`);
    }
    if (entry.staged) await entry.staged.write(bytes);
    else entry.chunks.push(bytes);
    entry.received = received;
  }

  /** Completes the current entry: a file is queued for its rename, a symlink made. */
  async end(): Promise<void> {
    const entry = this.#entry;
    if (!entry) throw EntryError.protocol("", "an end message arrived before any start message");
    const { header } = entry;
    if (entry.kind === "file" && entry.received !== header.size) {
      throw sizeMismatch(header.path, `${entry.received} of the declared ${header.size} bytes arrived`);
    }
    this.#entry = undefined;
    // Directories and symlinks take effect in stream order, after the files before them.
    if (entry.kind === "dir" || entry.kind === "symlink") {
      await this.#commits.drain();
      this.#throwIfFailed();
    }
    if (entry.kind === "file") {
      let staged = entry.staged;
      try {
        if (!staged) {
          staged = new StagedFile(entry.local, header.path);
          staged.writeSync(entry.chunks);
        }
        staged.setAttributes(this.#policy.attributes(header, "file", true));
      } catch (error) {
        staged?.discard();
        throw error;
      }
      const size = entry.received;
      const sync = this.#needsSync(dirname(entry.local));
      // A streamed file's fsync starts at once; small ones are flushed in batches.
      await this.#commits.add(staged, sync, entry.staged !== undefined, () =>
        this.#committed(entry.local, "file", size),
      );
      this.#throwIfFailed();
    } else if (entry.kind === "symlink") {
      replaceWithSymlink(entry.local, header.linkTarget, this.#policy.attributes(header, "symlink", true), header.path);
      this.#committed(entry.local, "symlink", 0n);
    } else if (entry.kind === "dir") {
      if (entry.merge) this.#open.push({ local: entry.local, path: header.path, final: undefined });
      else this.#makeDirectory(entry.local, header);
      this.#committed(entry.local, "dir", 0n);
    }
  }

  /** Whole entries of a batch, each checked and written exactly like start, data, end. */
  async batch(entries: readonly BatchEntry[]): Promise<void> {
    if (this.#entry) {
      throw EntryError.protocol(this.#entry.header.path, "a batch arrived before the previous entry's `end`");
    }
    for (const { header, data } of boundedBatch(entries)) {
      await this.begin(header as Header);
      if (data.length > 0) await this.write(data);
      await this.end();
    }
  }

  /**
   * The sender gave up on the current file part-way: the partial file is removed, never
   * committed, and its `end` closes nothing. Returns the bytes dropped, or undefined if
   * `path` is not the current file.
   */
  dropFile(path: string): number | undefined {
    const entry = this.#entry;
    if (entry?.kind !== "file" || entry.header.path !== path) return undefined;
    entry.staged?.discard();
    this.#entry = { kind: "dropped", header: entry.header };
    return Number(entry.received);
  }

  /**
   * The sender closed its side: checks nothing was left open, waits for the last
   * commits, applies the attributes of every directory still open (deepest first, all
   * of them even after one failed; the first failure is thrown), and makes it durable.
   */
  async finish(): Promise<void> {
    if (this.#entry) {
      throw EntryError.protocol(this.#entry.header.path, "the stream ended before this entry's end message");
    }
    await this.#commits.drain();
    this.#throwIfFailed();
    let failure: unknown;
    while (this.#open.length > 0) {
      await this.#leave(this.#open.pop() as OpenDirectory).catch((error: unknown) => {
        failure ??= error;
      });
    }
    if (failure) throw failure;
    for (const directory of this.#touched) {
      if (this.#needsSync(directory)) await syncDirectory(directory);
    }
    this.#touched.clear();
  }

  /**
   * After a failure or a cancelled stream: drops the entry in progress; files whose `end`
   * had arrived are still committed (up to the first one that fails), and the
   * directories get their attributes (best effort), so what did land looks right.
   */
  async abort(): Promise<void> {
    const entry = this.#entry;
    this.#entry = undefined;
    if (entry?.kind === "file") entry.staged?.discard();
    await this.#commits.drain();
    while (this.#open.length > 0) await this.#leave(this.#open.pop() as OpenDirectory).catch(() => undefined);
  }

  // Leaves the open directories the entry is not in, deepest first, and enters its parent.
  async #enter(parent: string, entryPath: string): Promise<void> {
    let top = this.#open[this.#open.length - 1];
    while (top && !contains(top.local, parent)) {
      this.#open.pop();
      await this.#leave(top);
      top = this.#open[this.#open.length - 1];
    }
    if (top?.local === parent) return;
    try {
      await this.#policy.enterParents(parent, top, entryPath, (directory) => this.#open.push(directory));
    } catch (error) {
      throw EntryError.io(error, entryPath);
    }
  }

  async #leave(directory: OpenDirectory): Promise<void> {
    // Renames into the directory change its mtime: they must all be done first.
    await this.#commits.drain();
    if (directory.final) setDirectoryAttributes(directory.local, directory.final, directory.path);
    this.#policy.left?.(directory);
  }

  #makeDirectory(local: string, header: Header): void {
    let created = true;
    try {
      mkdirSync(local, { mode: 0o700 });
    } catch (error) {
      if (errnoOf(error) !== "EEXIST") throw EntryError.io(error, header.path);
      created = false;
      let isLink = false;
      let isDirectory = false;
      try {
        const stats = this.#policy.followLinks ? statSync(local) : lstatSync(local);
        isLink = stats.isSymbolicLink();
        isDirectory = stats.isDirectory();
      } catch (statError) {
        throw EntryError.io(statError, header.path);
      }
      if (isLink) throw EntryError.unsafe(header.path, `${local} exists and is a symbolic link`);
      if (!isDirectory) {
        throw new EntryError(
          "destination",
          "EEXIST",
          header.path,
          `cannot overwrite non-directory ${local} with a directory`,
        );
      }
    }
    this.#open.push({ local, path: header.path, final: this.#policy.attributes(header, "dir", created) });
  }

  #committed(local: string, kind: EntryKind, bytes: bigint): void {
    this.#entries += 1;
    this.#bytes += bytes;
    if (this.#policy.durable) this.#touched.add(dirname(local));
    this.#policy.committed?.(local, kind);
  }

  #throwIfFailed(): void {
    const failure = this.failure;
    if (failure) throw failure;
  }

  /**
   * Whether fsync in `directory` does anything: false on tmpfs and ramfs, and for a
   * policy that does not want it. Skipping a no-op fsync saves a thread-pool round trip
   * per file on a guest whose files live in memory; when unsure, true.
   */
  #needsSync(directory: string): boolean {
    if (!this.#policy.durable) return false;
    let needed = this.#syncNeeded.get(directory);
    if (needed === undefined) {
      try {
        const type = statfsSync(directory).type;
        needed = type !== TMPFS_MAGIC && type !== RAMFS_MAGIC;
      } catch {
        needed = true;
      }
      // Kept per directory, but bounded: a tree of a million directories must not grow it.
      if (this.#syncNeeded.size >= MAX_KNOWN_DIRECTORIES) this.#syncNeeded.clear();
      this.#syncNeeded.set(directory, needed);
    }
    return needed;
  }
}

// How many directories' "does fsync do anything here" answers are remembered at once.
const MAX_KNOWN_DIRECTORIES = 1024;

function contains(directory: string, path: string): boolean {
  if (path === directory) return true;
  return path.startsWith(directory.endsWith("/") ? directory : `${directory}/`);
}

function sizeMismatch(path: string, problem: string): EntryError {
  return new EntryError("size-mismatch", ErrorCode.SIZE_MISMATCH, path, problem);
}

async function syncDirectory(path: string): Promise<void> {
  try {
    const handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw EntryError.io(error, path);
  }
}
