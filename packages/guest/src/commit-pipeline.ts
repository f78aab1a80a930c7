// Commits files in the background, in order. The slow part of committing a small file is
// fsync; doing one at a time makes a tree of thousands of files wait for thousands of
// disk flushes in a row. Here several files are prepared (fsynced) at once, which the
// file system's journal turns into shared flushes, while their renames still happen
// strictly in stream order, so "everything before the first failure, nothing after it"
// holds exactly as if they had been committed one by one.
import type { EntryAttributes, StagedFile } from "./atomic-file.js";

/** Files prepared at once; each holds an open descriptor until it is renamed. */
export const COMMITS_IN_FLIGHT = 8;

/** Background commits of one upload stream. */
export class CommitPipeline {
  // Resolves when the last queued commit has settled; never rejects.
  #tail: Promise<void> = Promise.resolve();
  readonly #inFlight = new Set<Promise<void>>();
  #failure: { error: unknown; path: string } | undefined;

  /** The first commit that failed, if any: later ones were discarded. */
  get failure(): { error: unknown; path: string } | undefined {
    return this.#failure;
  }

  /**
   * Starts committing `file`; `onCommitted` runs once it has been renamed into place.
   * Resolves as soon as there is room for another file in flight.
   */
  async add(file: StagedFile, attributes: EntryAttributes, onCommitted: () => void): Promise<void> {
    const prepared = file.prepare(attributes).then(
      () => undefined,
      (error: unknown) => error,
    );
    const previous = this.#tail;
    const done = (async () => {
      await previous;
      const error = await prepared;
      if (this.#failure || error !== undefined) {
        this.#failure ??= { error, path: file.target };
        await file.discard();
        return;
      }
      try {
        await file.publish();
        onCommitted();
      } catch (publishError) {
        this.#failure = { error: publishError, path: file.target };
        await file.discard();
      }
    })();
    this.#tail = done;
    this.#inFlight.add(done);
    void done.finally(() => this.#inFlight.delete(done));
    while (this.#inFlight.size >= COMMITS_IN_FLIGHT) await Promise.race(this.#inFlight);
  }

  /** Resolves once every queued commit has settled (succeeded or been discarded). */
  async drain(): Promise<void> {
    await this.#tail;
  }
}
