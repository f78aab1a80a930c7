// Options and results shared by copyTo and copyFrom.
import type { Metadata } from "@grpc/grpc-js";
import type { GuestChannel } from "../transport/guest-connection.js";
import { CopyError } from "./copy-error.js";

/** How far a transfer has got; passed to `onProgress`. */
export interface CopyProgress {
  /** File data bytes moved so far. */
  bytes: number;
  /** Entries (files, directories, symlinks) completed so far. */
  entries: number;
  /** The entry being moved: a path relative to the copy root ("app/bin/tool"). */
  path: string;
}

/** An entry that was left out while the rest of the transfer went on. */
export interface SkippedEntry {
  path: string;
  reason: string;
  /** Errno name, or "SPECIAL_FILE" for FIFOs, sockets and devices. */
  code: string;
}

/** What a finished transfer did. */
export interface CopyResult {
  /** File data bytes of the entries written at the destination. */
  bytes: number;
  /** Entries written at the destination. */
  entries: number;
  /**
   * Entries left out (the first MAX_SKIPPED_LISTED of them; `skippedCount` has the
   * total), so a tree of a million sockets cannot grow this without bound.
   */
  skipped: SkippedEntry[];
  skippedCount: number;
  /** Some entries were skipped: the destination is not a complete copy. */
  partial: boolean;
  /**
   * Files that changed while they were read and were kept as read, because the caller
   * set `acceptChangingFiles` (paths as in `skipped`; the first MAX_SKIPPED_LISTED of
   * them, `changedCount` has the total). Empty otherwise: a changing file fails the copy.
   */
  changed: string[];
  changedCount: number;
}

/** What a source-changed error says about keeping such files, for library and CLI users alike. */
export const ACCEPT_HINT = "(acceptChangingFiles, or guestctl cp --accept-changing-files, keeps such files as read)";

/** How many skipped (or changed) entries a CopyResult lists one by one. */
export const MAX_SKIPPED_LISTED = 1000;

/** Options of both copy directions. */
export interface CopyOptions {
  /**
   * Copy what symlinks point to instead of the links (`cp -L`). Default: links are
   * copied as links.
   */
  followLinks?: boolean;
  /** Apply the source's uid and gid exactly, 0:0 included (`cp -a`). Default: the receiver's own user. */
  preserveOwnership?: boolean;
  /**
   * Keep setuid and setgid bits. By default they are dropped: a setuid file owned by
   * the receiver's user (root, often) is a privilege escalation waiting to happen.
   */
  keepSetuid?: boolean;
  /**
   * Keep a file that changed while it was read (written to in place, or grown: its size,
   * mtime or ctime differed after the read from before it) as it was read, and list it
   * in the result's `changed`, as tar does with "file changed as we read it". Default: such
   * a file fails the copy with a CopyError with reason source-changed, because what was read
   * may mix old and new content, a file that never existed. A file that shrank while it
   * was read always fails the copy: it cannot be sent at the size it was announced with.
   */
  acceptChangingFiles?: boolean;
  /** Called after every chunk of data and every completed entry. */
  onProgress?: (progress: CopyProgress) => void;
  /** Stops the transfer; the partly written entry is removed and the copy rejects with code ABORTED. */
  signal?: AbortSignal;
  /** Sent with the gRPC calls (an `authorization` token, say). */
  metadata?: Metadata;
}

/**
 * Calls `onProgress`. An exception from it stops the transfer like an abort would, with
 * the exception as the cause: it is the caller's code, not the copy, that failed.
 */
export function notifyProgress(options: CopyOptions, progress: CopyProgress): void {
  try {
    options.onProgress?.(progress);
  } catch (error) {
    throw new CopyError(
      "cancelled",
      `the onProgress callback threw: ${error instanceof Error ? error.message : String(error)}`,
      {
        cause: error,
      },
    );
  }
}

/** Collects skipped (or changed) entries up to MAX_SKIPPED_LISTED and counts the rest. */
export class EntryList<T> {
  readonly listed: T[] = [];
  count = 0;

  add(entry: T): void {
    this.count += 1;
    if (this.listed.length < MAX_SKIPPED_LISTED) this.listed.push(entry);
  }
}

/** The metadata of a copy's calls: the channel's (its token) plus the caller's. */
export function callMetadata(channel: GuestChannel, extra: Metadata | undefined): Metadata {
  const metadata = channel.metadata();
  if (extra) metadata.merge(extra);
  return metadata;
}
