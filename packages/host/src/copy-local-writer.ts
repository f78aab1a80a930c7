// Writes the entries of a download into the local destination, one at a time, and
// refuses anything that would land outside it. Everything here distrusts the guest:
// names and link targets are checked (path-safety.ts), every directory an entry goes
// through is checked to be a real directory and not a symlink (whether the link came in
// this transfer or was already there), files are written to a temp name in their
// directory and renamed into place only once their declared size has arrived exactly.
//
// State is bounded by the depth of the tree, not its size: the stack of directories the
// current entry sits in, at most MAX_COMMITS_IN_FLIGHT file commits, and one small file's
// data. A file of up to SMALL_FILE_BYTES is gathered in memory and written, given its
// attributes and renamed into place with synchronous calls when its `end` arrives: one
// event-loop turn instead of a thread-pool trip per call, and the stream delivers only a
// few messages per turn, so the loop is never held long. A larger file streams to its
// temp file; its commit (chmod, utimes, close, rename) runs in the background, a few at
// once, while the next entries arrive.
//
// A directory's mode and times are applied when the stream leaves it, after everything
// inside it was written, so deepest first; a directory entered again later (a guest
// sending entries out of order) has its mode and times restored when it is left again.
// The calls on directories themselves (mkdir, lstat, chown, chmod, utimes) are
// synchronous too: one quick system call each, where a thread-pool round trip cost a
// tree of many small directories more than the calls did.
import { randomBytes } from "node:crypto";
import type { BigIntStats } from "node:fs";
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fchownSync,
  constants as fsConstants,
  fstatSync,
  futimesSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { type FileHandle, lchown, lstat, lutimes, open, rename, symlink, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { CopyFromGuestHeader } from "@guestkit/protocol";
import { cutText, errnoOf, MAX_GUEST_PATH, MAX_QUOTED_PATH, SMALL_FILE_BYTES } from "@guestkit/protocol";
import { type DestinationSpec, type DestinationState, placeCopy, type SourceSpec } from "./copy-destination.js";
import { CopyError } from "./copy-error.js";
import { describeLocalError } from "./guest-error.js";
import { linkTargetProblem, sanitizeMode, splitEntryPath } from "./path-safety.js";

/** What a LocalTreeWriter needs to know about the copy. */
export interface LocalTreeWriterOptions {
  source: SourceSpec;
  /** The source's own name: what it is called inside an existing destination directory. */
  baseName: string;
  /** The destination, with its path absolute and already resolved through links (the user's own path). */
  destination: DestinationSpec;
  destinationState: DestinationState;
  preserveOwnership: boolean;
  keepSetuid: boolean;
}

/** The kind of entry a header announced. */
export type EntryKind = "file" | "dir" | "symlink";

interface DirFrame {
  /** Path relative to the copy root's target, "" for the root. */
  rel: string;
  depth: number;
  local: string;
  /**
   * Attributes to apply on leaving; undefined leaves the directory as it is. `sent` is
   * the guest's time exactly, to check it was kept; a time restored is not checked.
   */
  final:
    | {
        mode: number;
        uid: number;
        gid: number;
        chown: boolean;
        atime: number;
        mtime: number;
        sent?: { seconds: bigint; nanos: number };
      }
    | undefined;
}

interface OpenFile {
  /** Undefined for a small file, which is gathered in `chunks` and written whole at its end. */
  handle: FileHandle | undefined;
  chunks: Uint8Array[];
  tempPath: string;
  finalPath: string;
  remaining: bigint;
  declared: bigint;
  header: CopyFromGuestHeader;
}

/** File commits (chmod, utimes, close, rename) allowed to run at once. */
const MAX_COMMITS_IN_FLIGHT = 16;

/** Writes one download's entries; see the file comment for the rules it enforces. */
export class LocalTreeWriter {
  private readonly options: LocalTreeWriterOptions;
  private target = "";
  private rootName: string | undefined;
  private rootKind: EntryKind | undefined;
  private readonly frames: DirFrame[] = [];
  private file: OpenFile | undefined;
  private pendingLink: { header: CopyFromGuestHeader; finalPath: string } | undefined;
  private pendingDir = false;
  /** The current file was dropped (the guest skipped it part-way); its `end` is still to come. */
  private droppedFile = false;
  /** File commits running, by final path; each settles without rejecting (see commitFailure). */
  private readonly commits = new Map<string, Promise<void>>();
  private commitFailure: unknown;
  private completed = 0;

  constructor(options: LocalTreeWriterOptions) {
    this.options = options;
  }

  /** Entries written completely (a file counts once it is renamed into place). */
  get entriesCompleted(): number {
    return this.completed;
  }

  /** An entry was begun and its `end` has not come yet. */
  get hasOpenEntry(): boolean {
    return this.file !== undefined || this.pendingLink !== undefined || this.pendingDir || this.droppedFile;
  }

  /** The file being received (begun, its `end` still to come), by the path its header gave. */
  get openFilePath(): string | undefined {
    return this.file?.header.path;
  }

  /** The copy root has arrived: a transfer without it copied nothing at all. */
  get hasRoot(): boolean {
    return this.rootName !== undefined;
  }

  /** Starts an entry. Throws a CopyError (unsafe-entry, protocol, destination, local-io) if it is refused. */
  async begin(header: CopyFromGuestHeader): Promise<EntryKind> {
    if (this.hasOpenEntry) {
      throw protocol(header.path, "a header arrived before the previous entry's `end`");
    }
    this.throwIfCommitFailed();
    const names = entryNames(header.path);
    if (header.isDir && header.isSymlink)
      throw protocol(header.path, "an entry cannot be both a directory and a symlink");
    const kind: EntryKind = header.isDir ? "dir" : header.isSymlink ? "symlink" : "file";
    // The size of a directory or symlink header means nothing and is never used: the
    // existing Go agent puts the link's lstat size (its target's length) there. Data
    // after such a header is refused by write() all the same.
    if (kind === "file" && header.size < 0n) throw protocol(header.path, `negative size ${header.size}`);
    if (header.mtimeNanos > 999_999_999) throw protocol(header.path, `mtime_nanos out of range: ${header.mtimeNanos}`);

    if (this.rootName === undefined) return this.beginRoot(header, names, kind);
    if (names[0] !== this.rootName) {
      throw unsafe(header.path, `outside the copied tree (its first name is not ${JSON.stringify(this.rootName)})`);
    }
    if (names.length === 1) throw protocol(header.path, "the copy root was sent twice");
    if (this.rootKind !== "dir") throw unsafe(header.path, "an entry inside a root that is not a directory");
    const rel = names.slice(1);
    await this.enterParent(rel.slice(0, -1), header.path);
    const local = join(this.target, ...rel);
    // The same name sent twice: the earlier commit must land first.
    await this.commits.get(local);
    if (kind === "dir") {
      await this.makeDir(local, rel.join("/"), rel.length, header);
    } else if (kind === "symlink") {
      // The link's own directory is `rel.length - 1` levels below the copy root.
      this.checkLinkTarget(header, rel.length - 1);
      this.pendingLink = { header, finalPath: local };
    } else {
      await this.openFile(local, header);
    }
    return kind;
  }

  /** Writes data of the current file. More than its header declared is refused. */
  async write(data: Uint8Array): Promise<void> {
    const file = this.file;
    if (!file) throw protocol("", "data outside a file");
    if (BigInt(data.byteLength) > file.remaining) {
      throw new CopyError(
        "size-mismatch",
        `${file.header.path}: the guest sent more data than the ${file.declared} bytes its header declared`,
        { path: file.header.path },
      );
    }
    const handle = file.handle;
    if (handle) {
      let offset = 0;
      while (offset < data.byteLength) {
        const { bytesWritten } = await localIo(file.header.path, () =>
          handle.write(data, offset, data.byteLength - offset, null),
        );
        offset += bytesWritten;
      }
    } else {
      file.chunks.push(data);
    }
    file.remaining -= BigInt(data.byteLength);
  }

  /**
   * The guest gave up on the current file part-way (it shrank while being read, or a read
   * failed) and said so with a `skipped` for it: the partial file is removed, never
   * committed, and the transfer goes on. Resolves to the bytes dropped, or undefined if
   * `path` is not the current file.
   */
  async dropFile(path: string): Promise<number | undefined> {
    const file = this.file;
    if (!file || file.header.path !== path) return undefined;
    this.file = undefined;
    this.droppedFile = true;
    if (file.handle) {
      await file.handle.close().catch(() => undefined);
      await unlink(file.tempPath).catch(() => undefined);
    }
    return Number(file.declared - file.remaining);
  }

  /** Completes the current entry: a file is renamed into place, a symlink created. */
  async end(): Promise<void> {
    if (this.droppedFile) {
      this.droppedFile = false;
      return;
    }
    if (this.file) {
      const file = this.file;
      if (file.remaining !== 0n) {
        throw new CopyError(
          "size-mismatch",
          `${file.header.path}: the guest ended the file after ${file.declared - file.remaining} of the ${file.declared} bytes its header declared`,
          { path: file.header.path },
        );
      }
      this.file = undefined;
      if (file.handle) await this.startCommit(file, file.handle);
      else this.commitSmallFile(file);
      return;
    }
    if (this.pendingLink) {
      const { header, finalPath } = this.pendingLink;
      this.pendingLink = undefined;
      const tempPath = join(dirname(finalPath), tempName());
      try {
        await localIo(header.path, async () => {
          await symlink(header.linkTarget, tempPath);
          if (this.options.preserveOwnership) await lchown(tempPath, header.uid, header.gid);
          await lutimes(tempPath, nowSeconds(), mtimeOf(header));
          if (timeMayBeClamped(header.mtime)) {
            checkTimeKept(header.mtime, header.mtimeNanos, (await lstat(tempPath, { bigint: true })).mtimeNs);
          }
        });
        await this.replace(tempPath, finalPath, header.path);
      } catch (error) {
        await unlink(tempPath).catch(() => undefined);
        throw error;
      }
      this.completed += 1;
      return;
    }
    if (this.pendingDir) {
      this.pendingDir = false;
      this.completed += 1;
      return;
    }
    throw protocol("", "an `end` without an entry");
  }

  /** Waits for the last commits, then applies the attributes of every directory still open, deepest first. */
  async finish(): Promise<void> {
    await Promise.all(this.commits.values());
    this.throwIfCommitFailed();
    while (this.frames.length > 0) await this.leave(this.frames.pop() as DirFrame);
  }

  /**
   * After a failure: removes the partly written file, and still applies the attributes of
   * the directories written so far (best effort), so what did land looks right.
   */
  async discard(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    this.pendingLink = undefined;
    this.droppedFile = false;
    if (file?.handle) {
      await file.handle.close().catch(() => undefined);
      await unlink(file.tempPath).catch(() => undefined);
    }
    // Commits that fail remove their own temp file.
    await Promise.all(this.commits.values());
    while (this.frames.length > 0) await this.leave(this.frames.pop() as DirFrame).catch(() => undefined);
  }

  private async beginRoot(header: CopyFromGuestHeader, names: string[], kind: EntryKind): Promise<EntryKind> {
    if (names.length !== 1) throw protocol(header.path, "the first entry must be the copy root itself");
    const { source, baseName, destination, destinationState } = this.options;
    const placement = placeCopy(source, kind === "dir", baseName, destination, destinationState);
    this.target = placement.target;
    this.rootName = names[0] as string;
    this.rootKind = kind;
    if (placement.createsDestination) {
      const parent = await lstat(dirname(this.target)).catch(() => undefined);
      if (!parent?.isDirectory()) {
        throw new CopyError("destination", `directory ${dirname(this.target)} does not exist`, {
          path: dirname(this.target),
        });
      }
    }
    if (kind === "dir") {
      if (placement.mergeIntoExisting) {
        this.frames.push({ rel: "", depth: 0, local: this.target, final: undefined });
        this.pendingDir = true;
      } else {
        await this.makeDir(this.target, "", 0, header);
      }
    } else if (kind === "symlink") {
      // A single link is contained by the directory that receives it.
      this.checkLinkTarget(header, 0);
      this.pendingLink = { header, finalPath: this.target };
    } else {
      await this.openFile(this.target, header);
    }
    return kind;
  }

  /** Makes sure the entry's parent directories are the open frames, leaving the others. */
  private async enterParent(parentNames: string[], entryPath: string): Promise<void> {
    const parentRel = parentNames.join("/");
    while (this.frames.length > 1) {
      const top = this.frames[this.frames.length - 1] as DirFrame;
      if (parentRel === top.rel || parentRel.startsWith(`${top.rel}/`)) break;
      this.frames.pop();
      await this.leave(top);
    }
    const top = this.frames[this.frames.length - 1] as DirFrame;
    for (let depth = top.depth + 1; depth <= parentNames.length; depth += 1) {
      const rel = parentNames.slice(0, depth).join("/");
      const local = join(this.target, rel);
      await this.commits.get(local);
      let stats: BigIntStats;
      try {
        stats = lstatSync(local, { bigint: true });
      } catch (error) {
        if (errnoOf(error) === "ENOENT") throw protocol(entryPath, `arrived before its directory ${rel}`);
        throw ioError(entryPath, error);
      }
      if (stats.isSymbolicLink()) throw unsafe(entryPath, `goes through the symbolic link ${rel}`);
      if (!stats.isDirectory()) throw unsafe(entryPath, `goes through ${rel}, which is not a directory`);
      // A directory entered again (the guest sent entries out of order): restore what it
      // had on leaving, and meanwhile make sure we can write into it.
      const final = restoreOf(stats);
      if (final && (final.mode & 0o700) !== 0o700) localIoSync(entryPath, () => chmodSync(local, final.mode | 0o700));
      this.frames.push({ rel, depth, local, final });
    }
  }

  private async makeDir(local: string, rel: string, depth: number, header: CopyFromGuestHeader): Promise<void> {
    // Owner-only until it is left: nobody else sees a half-filled directory, and we can write into it.
    let made = true;
    try {
      mkdirSync(local, { mode: 0o700 });
    } catch (error) {
      if (errnoOf(error) !== "EEXIST") throw ioError(header.path, error);
      made = false;
    }
    if (!made) {
      const existing = localIoSync(header.path, () => lstatSync(local));
      if (existing.isSymbolicLink()) throw unsafe(header.path, `${local} exists and is a symbolic link`);
      if (!existing.isDirectory()) {
        throw new CopyError("destination", `cannot overwrite non-directory ${local} with a directory`, {
          path: header.path,
        });
      }
    }
    this.frames.push({
      rel,
      depth,
      local,
      final: {
        mode: sanitizeMode(header.mode, this.options.keepSetuid),
        uid: header.uid,
        gid: header.gid,
        chown: this.options.preserveOwnership,
        atime: nowSeconds(),
        mtime: mtimeOf(header),
        sent: { seconds: header.mtime, nanos: header.mtimeNanos },
      },
    });
    this.pendingDir = true;
  }

  private async openFile(finalPath: string, header: CopyFromGuestHeader): Promise<void> {
    const tempPath = join(dirname(finalPath), tempName());
    const handle =
      header.size <= SMALL_FILE_BYTES
        ? undefined
        : await localIo(header.path, () => open(tempPath, TEMP_FILE_FLAGS, 0o600));
    this.file = { handle, chunks: [], tempPath, finalPath, remaining: header.size, declared: header.size, header };
  }

  private checkLinkTarget(header: CopyFromGuestHeader, depth: number): void {
    const problem = linkTargetProblem(header.linkTarget, depth);
    if (problem)
      throw unsafe(header.path, `${problem}: ${JSON.stringify(cutText(header.linkTarget, MAX_QUOTED_PATH))}`);
  }

  /** Renames a finished temp entry over its final name, which must not be a directory. */
  private async replace(tempPath: string, finalPath: string, entryPath: string): Promise<void> {
    try {
      await rename(tempPath, finalPath);
    } catch (error) {
      throw renameError(finalPath, entryPath, error);
    }
  }

  /**
   * A complete small file, all at once: temp file, data, ownership, mode, times, rename.
   * On failure nothing of it is left and the error is thrown.
   */
  private commitSmallFile(file: OpenFile): void {
    const { header, tempPath } = file;
    let fd: number;
    try {
      fd = openSync(tempPath, TEMP_FILE_FLAGS, 0o600);
    } catch (error) {
      throw ioError(header.path, error);
    }
    try {
      try {
        for (const chunk of file.chunks) {
          let offset = 0;
          while (offset < chunk.byteLength) offset += writeSync(fd, chunk, offset, chunk.byteLength - offset);
        }
        if (this.options.preserveOwnership) fchownSync(fd, header.uid, header.gid);
        // After chown, which clears setuid and setgid.
        fchmodSync(fd, sanitizeMode(header.mode, this.options.keepSetuid));
        futimesSync(fd, nowSeconds(), mtimeOf(header));
        if (timeMayBeClamped(header.mtime)) {
          checkTimeKept(header.mtime, header.mtimeNanos, fstatSync(fd, { bigint: true }).mtimeNs);
        }
      } catch (error) {
        throw ioError(header.path, error);
      } finally {
        closeSync(fd);
      }
      try {
        renameSync(tempPath, file.finalPath);
      } catch (error) {
        throw renameError(file.finalPath, header.path, error);
      }
    } catch (error) {
      try {
        unlinkSync(tempPath);
      } catch {
        // Already gone: nothing to clean up.
      }
      throw error;
    }
    this.completed += 1;
  }

  /**
   * Commits a complete file in the background: ownership, mode, times, close, rename.
   * Waits first if MAX_COMMITS_IN_FLIGHT are already running.
   */
  private async startCommit(file: OpenFile, handle: FileHandle): Promise<void> {
    while (this.commits.size >= MAX_COMMITS_IN_FLIGHT) await Promise.race(this.commits.values());
    this.throwIfCommitFailed();
    const { header } = file;
    const commit = async () => {
      try {
        await localIo(header.path, async () => {
          if (this.options.preserveOwnership) await handle.chown(header.uid, header.gid);
          // After chown, which clears setuid and setgid.
          await handle.chmod(sanitizeMode(header.mode, this.options.keepSetuid));
          await handle.utimes(nowSeconds(), mtimeOf(header));
          if (timeMayBeClamped(header.mtime)) {
            checkTimeKept(header.mtime, header.mtimeNanos, (await handle.stat({ bigint: true })).mtimeNs);
          }
        });
      } finally {
        await handle.close().catch(() => undefined);
      }
      await this.replace(file.tempPath, file.finalPath, header.path);
    };
    const task = commit()
      .then(
        () => {
          this.completed += 1;
        },
        async (error: unknown) => {
          this.commitFailure ??= error;
          await unlink(file.tempPath).catch(() => undefined);
        },
      )
      .finally(() => this.commits.delete(file.finalPath));
    this.commits.set(file.finalPath, task);
  }

  private throwIfCommitFailed(): void {
    if (this.commitFailure !== undefined) throw this.commitFailure;
  }

  private async leave(frame: DirFrame): Promise<void> {
    // Renames into the directory change its mtime: they must all be done first.
    const prefix = `${frame.local}/`;
    await Promise.all([...this.commits].filter(([path]) => path.startsWith(prefix)).map(([, task]) => task));
    const final = frame.final;
    if (!final) return;
    localIoSync(frame.rel, () => {
      if (final.chown) lchownSync(frame.local, final.uid, final.gid);
      chmodSync(frame.local, final.mode);
      utimesSync(frame.local, final.atime, final.mtime);
      const sent = final.sent;
      if (sent && timeMayBeClamped(sent.seconds)) {
        checkTimeKept(sent.seconds, sent.nanos, lstatSync(frame.local, { bigint: true }).mtimeNs);
      }
    });
  }
}

/** The names of a guest entry path, or an unsafe-entry error. */
function entryNames(path: string): string[] {
  // The agent names the root "." when it is "/": allowed as the first name only.
  if (path === ".") return ["."];
  const dotRoot = path.startsWith("./");
  const split = splitEntryPath(dotRoot ? path.slice(2) : path);
  if ("problem" in split) throw unsafe(path, split.problem);
  return dotRoot ? [".", ...split.names] : split.names;
}

function restoreOf(stats: BigIntStats): DirFrame["final"] {
  return {
    mode: Number(stats.mode) & 0o7777,
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    chown: false,
    atime: Number(stats.atimeNs) / 1e9,
    mtime: Number(stats.mtimeNs) / 1e9,
  };
}

// Node takes times as seconds in a double: about a microsecond of precision today, the
// best its fs API offers.
function mtimeOf(header: CopyFromGuestHeader): number {
  return Number(header.mtime) + header.mtimeNanos / 1e9;
}

function nowSeconds(): number {
  return Date.now() / 1000;
}

// FAT keeps even seconds, the coarsest modification times of a file system; any file
// system keeps a time within that of what was asked, unless it clamped it.
const KEPT_WITHIN_NS = 2_000_000_000n;

// Every file system stores the times from 1980 (where FAT's range starts) to 2038 (where
// 32-bit ones end), a day of margin each side for FAT's local time: nearly every file's
// time is in there, and reading it back would cost a stat per file of a tree.
const SURELY_KEPT_FROM = 315_619_200n; // 1980-01-02
const SURELY_KEPT_UNTIL = 2_147_397_247n; // 2038-01-18

function timeMayBeClamped(seconds: bigint): boolean {
  return seconds < SURELY_KEPT_FROM || seconds >= SURELY_KEPT_UNTIL;
}

/**
 * Throws (errno EINVAL) when the local file system did not keep the guest's mtime: the
 * kernel clamps a time past what it stores (2038 on XFS without bigtime, 2446 on ext4)
 * without an error, and a copy must not report success for a time it did not apply.
 * `keptNs` is the mtimeNs of a stat after setting it, taken only when timeMayBeClamped.
 */
function checkTimeKept(seconds: bigint, nanos: number, keptNs: bigint): void {
  const askedNs = seconds * 1_000_000_000n + BigInt(nanos);
  const difference = keptNs > askedNs ? keptNs - askedNs : askedNs - keptNs;
  if (difference < KEPT_WITHIN_NS) return;
  // Node sets "now" for any time before 1970.
  const problem =
    seconds < 0n
      ? "is before 1970, which cannot be set from here"
      : `is outside what the local file system can store (it would be ${keptNs / 1_000_000_000n} s)`;
  throw Object.assign(new Error(`the mtime ${seconds} s ${problem}`), { code: "EINVAL" });
}

// Dot-prefixed so it stays out of sight; a random prefix per process so two copies into
// one directory never collide (and O_EXCL would catch it if they did).
const tempPrefix = `.guestkit-${randomBytes(6).toString("hex")}-`;
let tempCounter = 0;
function tempName(): string {
  tempCounter += 1;
  return `${tempPrefix}${tempCounter}.part`;
}

// These two are about entries not checked yet: their paths may be any length.
function unsafe(path: string, problem: string): CopyError {
  return new CopyError("unsafe-entry", `refused entry ${JSON.stringify(cutText(path, MAX_QUOTED_PATH))}: ${problem}`, {
    path: cutText(path, MAX_GUEST_PATH),
  });
}

function protocol(path: string, problem: string): CopyError {
  const where = path === "" ? "" : ` at entry ${JSON.stringify(cutText(path, MAX_QUOTED_PATH))}`;
  return new CopyError("protocol", `protocol error${where}: ${problem}`, { path: cutText(path, MAX_GUEST_PATH) });
}

const TEMP_FILE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;

function renameError(finalPath: string, entryPath: string, error: unknown): CopyError {
  // rename(2) refuses to put a non-directory over a directory: EISDIR.
  if (errnoOf(error) === "EISDIR" || errnoOf(error) === "ENOTEMPTY" || errnoOf(error) === "EEXIST") {
    return new CopyError("destination", `cannot overwrite directory ${finalPath} with a non-directory`, {
      path: entryPath,
      cause: error,
    });
  }
  return ioError(entryPath, error);
}

function ioError(path: string, error: unknown): CopyError {
  if (error instanceof CopyError) return error;
  const errno = errnoOf(error);
  return new CopyError("local-io", `cannot write ${path}: ${describeLocalError(error)}`, {
    path,
    ...(errno === "" ? {} : { errno }),
    cause: error,
  });
}

function localIoSync<T>(path: string, action: () => T): T {
  try {
    return action();
  } catch (error) {
    throw ioError(path, error);
  }
}

async function localIo<T>(path: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    throw ioError(path, error);
  }
}
