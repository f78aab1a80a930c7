// The checks on what a sender says about an entry, the same in both directions: a start
// (CopyToGuest) and a header (CopyFromGuest) carry the same fields, and a batch of whole
// entries is bounded the same way whichever side sent it. Paths are the path policy's
// business (see tree-writer.ts); everything else about a header is checked here.
import { MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, SMALL_FILE_BYTES } from "@guestkit/protocol";
import { EntryError } from "./entry-error.js";
import type { EntryMetadata } from "./file-metadata.js";
import { timeProblem } from "./timestamp.js";

/** The fields a start or a header carries about one entry: its metadata (the senders' EntryMetadata) and its path. */
export interface EntryHeader extends EntryMetadata {
  path: string;
}

/** The kind of entry a header announced. */
export type EntryKind = "file" | "dir" | "symlink";

/** One whole entry of a batch; a batch entry without its header is a framing error. */
export interface BatchEntry {
  header?: EntryHeader | undefined;
  data: Uint8Array;
}

/** The kind of entry `header` announces, or an EntryError when it cannot be carried out as asked. */
export function checkHeader(header: EntryHeader): EntryKind {
  const fail = (problem: string) => {
    throw EntryError.invalid(header.path, problem);
  };
  if (header.isDir && header.isSymlink) fail("an entry cannot be both a directory and a symlink");
  const kind: EntryKind = header.isDir ? "dir" : header.isSymlink ? "symlink" : "file";
  // The size of a directory or symlink header means nothing and is never used: the
  // existing Go agent puts the link's lstat size (its target's length) there.
  if (kind === "file" && header.size < 0n) fail(`negative size ${header.size}`);
  if (kind === "symlink" && header.linkTarget === "") fail("a symlink needs a link_target");
  if (header.linkTarget.includes("\0")) fail("the link target contains a NUL byte");
  const problem = timeProblem({ seconds: header.mtime, nanos: header.mtimeNanos });
  if (problem) fail(problem);
  return kind;
}

/**
 * The entries of a batch, each checked against the bounds every sender keeps to just
 * before it is handed out: entries before one that breaks them are written as if they
 * had come one by one. Too many entries are refused before any is written.
 */
export function* boundedBatch(entries: readonly BatchEntry[]): Generator<{ header: EntryHeader; data: Uint8Array }> {
  if (entries.length > MAX_BATCH_ENTRIES) {
    throw EntryError.protocol("", `a batch of ${entries.length} entries (at most ${MAX_BATCH_ENTRIES} are allowed)`);
  }
  let bytes = 0;
  for (const { header, data } of entries) {
    if (!header) throw EntryError.protocol("", "a batch entry without its header");
    bytes += data.length;
    if (bytes > MAX_BATCH_BYTES) {
      throw EntryError.protocol(header.path, `a batch with more than ${MAX_BATCH_BYTES} bytes of data`);
    }
    // A batch holds whole files in memory: only small ones belong in it.
    if (!header.isDir && !header.isSymlink && header.size > BigInt(SMALL_FILE_BYTES)) {
      throw EntryError.protocol(header.path, `a file of ${header.size} bytes in a batch (at most ${SMALL_FILE_BYTES})`);
    }
    yield { header, data };
  }
}
