// Writing a remote command's output to our own stdout or stderr with backpressure: a
// slow reader (a pager, a full pipe) holds back the remote command through gRPC flow
// control instead of filling our memory. A reader that went away (EPIPE) is noted once
// and the rest of the output is dropped, as a local command would get SIGPIPE.
import type { Writable } from "node:stream";

/** One of our output streams, as the remote command's stdout or stderr. */
export class OutputSink {
  readonly #stream: Writable;
  readonly #onBroken: () => void;
  #broken = false;

  /** `onBroken` runs once, when the reader of `stream` has gone away. */
  constructor(stream: Writable, onBroken: () => void) {
    this.#stream = stream;
    this.#onBroken = onBroken;
    stream.on("error", () => this.#markBroken());
  }

  /** Whether the reader has gone away (output is being dropped). */
  get broken(): boolean {
    return this.#broken;
  }

  /** Writes `data`; resolves once the stream can take more (or is broken). */
  write(data: Uint8Array): Promise<void> {
    if (this.#broken || this.#stream.destroyed) return Promise.resolve();
    if (this.#stream.write(data)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#stream.off("drain", done);
        this.#stream.off("error", done);
        this.#stream.off("close", done);
        resolve();
      };
      this.#stream.once("drain", done);
      this.#stream.once("error", done);
      this.#stream.once("close", done);
    });
  }

  /** Resolves once everything written so far has been handed to the system. */
  flush(): Promise<void> {
    if (this.#broken || this.#stream.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#stream.once("error", () => resolve());
      this.#stream.write("", () => resolve());
    });
  }

  #markBroken(): void {
    if (this.#broken) return;
    this.#broken = true;
    this.#onBroken();
  }
}
