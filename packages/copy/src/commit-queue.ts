// Commits staged files in stream order. The slow part of committing a file durably is
// fsync; waiting for each one in turn makes a tree of thousands of files wait for
// thousands of disk flushes in a row. Here the fsyncs of many files run at once (a
// journalling file system shares their flushes), and the renames still happen strictly
// in stream order, so "everything before the first failure, nothing after it" holds
// exactly as if the files had been committed one by one. A file that needs no fsync (the
// host's side; a file system in memory) is renamed at once when nothing is ahead of it.
import type { StagedFile } from "./staged-file.js";

/** Files staged and not yet renamed; each holds an open descriptor until then. */
export const MAX_STAGED_FILES = 128;

interface QueuedFile {
  file: StagedFile;
  onCommitted: () => void;
  started: boolean;
  synced: boolean;
  error: unknown;
}

/** The staged files of one stream on their way to their final names. */
export class CommitQueue {
  #queue: QueuedFile[] = [];
  #waiters: Array<() => void> = [];
  #failure: { error: unknown; path: string } | undefined;

  /** The first commit that failed, if any: every file after it was discarded. */
  get failure(): { error: unknown; path: string } | undefined {
    return this.#failure;
  }

  /**
   * Queues `file` (its attributes already set) for its rename; `onCommitted` runs once
   * it is in place. With `sync` it is fsynced first: at once with `flush` (and every file
   * waiting before it), otherwise together with the others once MAX_STAGED_FILES wait
   * or the queue is drained. Resolves when there is room for another file.
   */
  async add(file: StagedFile, sync: boolean, flush: boolean, onCommitted: () => void): Promise<void> {
    this.#queue.push({ file, onCommitted, started: !sync, synced: !sync, error: undefined });
    if (flush || this.#queue.length >= MAX_STAGED_FILES) this.#flush();
    this.#pump();
    while (this.#queue.length >= MAX_STAGED_FILES) await this.#next();
  }

  /** Resolves once every queued file is committed or discarded. */
  async drain(): Promise<void> {
    this.#flush();
    while (this.#queue.length > 0) await this.#next();
  }

  #flush(): void {
    for (const queued of this.#queue) {
      if (queued.started) continue;
      queued.started = true;
      void queued.file.sync().then((error) => {
        queued.error = error;
        queued.synced = true;
        this.#pump();
      });
    }
  }

  #next(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #pump(): void {
    let head = this.#queue[0];
    if (!head?.synced) return;
    while (head?.synced) {
      this.#queue.shift();
      if (this.#failure || head.error !== undefined) {
        this.#failure ??= { error: head.error, path: head.file.entryPath };
        head.file.discard();
      } else {
        try {
          head.file.publish();
          head.onCommitted();
        } catch (error) {
          this.#failure = { error, path: head.file.entryPath };
          head.file.discard();
        }
      }
      head = this.#queue[0];
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
