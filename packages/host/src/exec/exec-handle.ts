// A running command: its output as an async iterable, its stdin, resize(), kill(), its
// pid and its exit. One Exec call on the shared connection.
import type { Socket } from "node:net";
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  Capability,
  CHUNK_SIZE,
  cutText,
  DataConnectionError,
  EXEC_STDIN_WINDOW_BYTES,
  type ExecExit,
  type ExecRequest,
  ExecRequestSchema,
  type ExecResponse,
  ExecResponseSchema,
  type ExecStart,
  MAX_GUEST_CODE,
  MAX_GUEST_MESSAGE,
  readFrames,
} from "@guestkit/protocol";
import { Code, cancelledError, errorFromStatus, GuestError, toGuestError } from "../guest-error.js";
import { askForDataConnection, isTicket, untilQuietAfterCall } from "../transport/data-connection.js";
import type { GuestChannel, GuestConnection } from "../transport/guest-connection.js";
import type { ExecOptions } from "./exec-request.js";
import { checkSize, signalName } from "./exec-request.js";
import { OutputQueue } from "./output-queue.js";

/** A piece of a command's output. */
export interface ExecOutput {
  readonly stream: "stdout" | "stderr";
  readonly data: Uint8Array;
}

/** How a command ended. A non-zero code or a signal death is data, not an error. */
export interface ExitStatus {
  /**
   * What a shell would report: the command's own code; 128+N after signal N; 124 after
   * the timeout; 127 when the command was not found, 126 when it could not be started.
   */
  readonly code: number;
  /** The signal that ended it ("SIGKILL"), or null. */
  readonly signal: string | null;
  /** The timeout fired and the process group was killed. */
  readonly timedOut: boolean;
  /**
   * A background process kept the output open after the command exited; the agent
   * stopped reading after a bounded drain time, so its later output is missing.
   */
  readonly truncated: boolean;
  /** The command never ran (code 126 or 127); `startError` says why. */
  readonly startFailed: boolean;
  readonly startError: string | null;
  /**
   * The command ended, but how is not known: the agent reported exit code -1, as the
   * existing Go agent does after a timeout and after any signal death. `code` is -1.
   */
  readonly unknown: boolean;
}

/** A running command. Iterate it for output; await `exit` for the end. */
export interface ExecHandle extends AsyncIterable<ExecOutput> {
  /** The command's stdin, when exec() was asked for it (`stdin: true`): end() is EOF. */
  readonly stdin: Writable | null;
  /** The command's pid in the guest, once it started (undefined before, or from an old agent). */
  readonly pid: number | undefined;
  /**
   * Resolves with the pid once the command started; with undefined if it failed to start
   * or the agent does not report pids; rejects like `exit` if the call failed before.
   */
  readonly started: Promise<number | undefined>;
  /**
   * Resolves when the command ended. Rejects with a GuestError only when the outcome is
   * unknown: the agent could not be reached, the connection dropped, the call was
   * cancelled, or the agent broke the protocol.
   */
  readonly exit: Promise<ExitStatus>;
  /** Output bytes dropped because nobody was iterating (see ExecOptions.unconsumedOutputLimit). */
  readonly droppedBytes: number;
  /**
   * Sets the terminal size (tty mode). Ignored once the command ended, and (with a
   * warning) by an agent without guestkit's additions.
   */
  resize(rows: number, cols: number): void;
  /**
   * Sends a signal to the command's whole process group: a name ("TERM", "SIGINT") or
   * a number. Default SIGTERM. Ignored once the command ended. An agent without
   * guestkit's additions cannot receive signals: UNIMPLEMENTED is thrown once that is
   * known, and a signal asked for before is dropped with a warning.
   */
  kill(signal?: string | number): void;
}

/** What exec() needs from the client. */
export interface ExecContext {
  readonly connection: GuestConnection;
  /** Registers a running call so client.close() can end it; returns the unregister function. */
  track(cancel: (error: GuestError) => void): () => void;
}

// Queued output above which the stream is paused while someone iterates.
const OUTPUT_HIGH_WATER_BYTES = 1024 * 1024;
const DEFAULT_UNCONSUMED_LIMIT_BYTES = 1024 * 1024;
// With a timeout the agent ends the command itself; if no exit arrives this long after
// it should have, the guest is not to be trusted to send one and the call is ended.
const TIMEOUT_BACKSTOP_MS = 30_000;

/** The ExitStatus an agent's ExecExit describes (its texts cut to a bound). */
export function exitStatusOf(exit: ExecExit): ExitStatus {
  return {
    code: exit.code,
    signal: exit.signal ? cutText(exit.signal, MAX_GUEST_CODE) : null,
    timedOut: exit.timedOut,
    truncated: exit.outputTruncated,
    startFailed: exit.startFailed,
    startError: exit.startFailed ? cutText(exit.startError, MAX_GUEST_MESSAGE) || "could not start" : null,
    unknown: false,
  };
}

/** A stdin message held back by the credit, and the write callback it completes. */
interface WaitingStdin {
  readonly message: ExecRequest;
  readonly bytes: number;
  readonly sent: (() => void) | undefined;
}

/** Starts a command (connecting first if needed) and returns its handle at once. */
export function startExec(context: ExecContext, start: ExecStart, options: ExecOptions): ExecHandle {
  return new RunningExec(context, start, options);
}

class RunningExec implements ExecHandle {
  readonly stdin: Writable | null;
  readonly started: Promise<number | undefined>;
  readonly exit: Promise<ExitStatus>;
  #pid: number | undefined;
  readonly #context: ExecContext;
  readonly #options: ExecOptions;
  readonly #where: string;
  readonly #output: OutputQueue<ExecOutput>;
  #call: grpc.ClientDuplexStream<ExecRequest, ExecResponse> | undefined;
  // The agent's Exec understands stdin_close, signal, resize and user (undefined until known).
  #control: boolean | undefined;
  #channel: GuestChannel | undefined;
  #warnedResize = false;
  // Control messages asked for before the call was up, sent right after start.
  #pending: ExecRequest[] = [];
  // Stdin credit (Capability.EXEC_STDIN_CREDIT): against an agent that grants it, stdin
  // waits here while a window's worth is in flight, so that what is written to the call
  // after it (kill, resize, EOF) never queues behind more than that.
  #stdinCredit = false;
  #stdinSent = 0;
  #stdinConsumed = 0;
  #stdinWaiting: WaitingStdin[] = [];
  #writable = true;
  #finished = false;
  #exitCode: number | undefined;
  #exitDetail: ExitStatus | undefined;
  #resolveStarted!: (pid: number | undefined) => void;
  #rejectStarted!: (error: unknown) => void;
  #resolveExit!: (status: ExitStatus) => void;
  #rejectExit!: (error: unknown) => void;
  #callUp: Promise<boolean>;
  #setCallUp!: (up: boolean) => void;
  #untrack: () => void;
  // Data connection (guest.proto, "Data connections"): asked for, and once the agent
  // sent its ticket, the reading of it, which ends at its end frame.
  #asksForData = false;
  #dataRead: Promise<void> | undefined;
  #dataSocket: Socket | undefined;
  #callEnded = false;
  // While the output queue is full: what the data connection's reader waits on.
  #dataHold: { promise: Promise<void>; release: () => void } | undefined;

  constructor(context: ExecContext, start: ExecStart, options: ExecOptions) {
    this.#context = context;
    this.#options = options;
    this.#where = `${context.connection.context}: exec ${start.command[0]}`;
    this.started = new Promise((resolve, reject) => {
      this.#resolveStarted = resolve;
      this.#rejectStarted = reject;
    });
    this.exit = new Promise((resolve, reject) => {
      this.#resolveExit = resolve;
      this.#rejectExit = reject;
    });
    // Both are also reported through the iterator; a caller who looks at only one of
    // them must not get an unhandled rejection from the other.
    this.started.catch(() => {});
    this.exit.catch(() => {});
    this.#callUp = new Promise((resolve) => {
      this.#setCallUp = resolve;
    });
    this.#output = new OutputQueue<ExecOutput>({
      highWaterBytes: OUTPUT_HIGH_WATER_BYTES,
      unconsumedLimitBytes: options.unconsumedOutputLimit ?? DEFAULT_UNCONSUMED_LIMIT_BYTES,
      pause: () => {
        this.#call?.pause();
        this.#holdData();
      },
      resume: () => {
        this.#call?.resume();
        this.#releaseData();
      },
    });
    this.stdin = options.stdin ? this.#createStdin() : null;
    this.#untrack = context.track((error) => this.#abandon(error));
    void this.#begin(start);
  }

  get pid(): number | undefined {
    return this.#pid;
  }

  get droppedBytes(): number {
    return this.#output.droppedBytes;
  }

  [Symbol.asyncIterator](): AsyncIterator<ExecOutput> {
    return this.#output[Symbol.asyncIterator]();
  }

  resize(rows: number, cols: number): void {
    const bad = (text: string) => new GuestError(Code.INVALID_ARGUMENT, text, { context: this.#where });
    checkSize(rows, "rows", bad);
    checkSize(cols, "cols", bad);
    this.#sendControl(create(ExecRequestSchema, { request: { case: "resize", value: { rows, cols } } }));
  }

  kill(signal: string | number = "SIGTERM"): void {
    const name = signalName(signal, this.#where);
    if (this.#control === false && !this.#finished) throw this.#noSignals();
    this.#sendControl(create(ExecRequestSchema, { request: { case: "signal", value: { name } } }));
  }

  #noSignals(): GuestError {
    return new GuestError(
      Code.UNIMPLEMENTED,
      "the agent cannot receive signals (it speaks only the original guest protocol)",
      { reason: "unsupported", context: this.#where },
    );
  }

  async #begin(start: ExecStart): Promise<void> {
    const signal = this.#options.signal;
    let channel: Awaited<ReturnType<GuestConnection["ready"]>>;
    try {
      channel = await this.#context.connection.ready({
        ...(this.#options.connectTimeoutMs !== undefined
          ? { deadline: Date.now() + this.#options.connectTimeoutMs }
          : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      this.#fail(toGuestError(error, this.#where));
      return;
    }
    if (this.#finished) return;
    this.#channel = channel;
    this.#control = channel.has(Capability.EXEC_CONTROL);
    if (!this.#control) {
      // Without guestkit's additions, `user` would be dropped and the command would run
      // as the agent's own user (root): refused, never silently widened.
      if (start.user !== "") {
        this.#fail(
          new GuestError(
            Code.FAILED_PRECONDITION,
            "the agent cannot run a command as another user (it speaks only the original guest protocol); it would run as the agent's own user",
            { reason: "unsupported", context: this.#where },
          ),
        );
        return;
      }
      if (start.tty) {
        channel.warn(
          `${this.#where}: the agent speaks only the original guest protocol: in a terminal, stdin EOF and signals cannot be delivered, and the terminal size is not set`,
        );
      }
    }
    const callOptions: Partial<grpc.CallOptions> = {};
    if (start.timeoutSeconds > 0) callOptions.deadline = Date.now() + start.timeoutSeconds * 1000 + TIMEOUT_BACKSTOP_MS;
    this.#asksForData = channel.has(Capability.DATA_CONNECTION);
    const metadata = this.#asksForData ? askForDataConnection(channel.metadata()) : channel.metadata();
    const call = channel.guest.exec(metadata, callOptions);
    this.#call = call;
    this.#stdinCredit = channel.has(Capability.EXEC_STDIN_CREDIT);
    call.on("data", (response: ExecResponse) => this.#onResponse(response));
    // Errors arrive again as the status; this listener keeps them from being thrown.
    call.on("error", () => {});
    let status: grpc.StatusObject | undefined;
    let ended = false;
    const settle = () => {
      if (!status || this.#finished) return;
      this.#callEnded = true;
      if (status.code !== 0) this.#onFailedStatus(status);
      else if (ended) {
        // The exit counts only once the output on the data connection is all in.
        if (this.#dataRead)
          this.#dataRead.then(
            () => this.#onStreamEnd(),
            (error: unknown) => this.#failData(error),
          );
        else this.#onStreamEnd();
      }
    };
    call.on("status", (received: grpc.StatusObject) => {
      status = received;
      settle();
    });
    call.on("end", () => {
      ended = true;
      settle();
    });
    if (signal) {
      const onAbort = () => this.#abandon(cancelledError(signal, this.#where));
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      this.exit.then(
        () => signal.removeEventListener("abort", onAbort),
        () => signal.removeEventListener("abort", onAbort),
      );
    }
    this.#write(create(ExecRequestSchema, { request: { case: "start", value: start } }));
    // Control messages first: without stdin, EOF may be a half-close, after which
    // nothing more can be sent.
    const pending = this.#pending;
    this.#pending = [];
    for (const message of pending) this.#sendControl(message);
    if (!this.stdin) this.#sendStdinEof();
    this.#setCallUp(true);
  }

  #onResponse(response: ExecResponse): void {
    const message = response.response;
    switch (message.case) {
      case "stdout":
      case "stderr":
        if (this.#dataRead) {
          this.#protocolError(`${message.case} on the call after its data connection was offered`);
          return;
        }
        if (this.#exitCode === undefined && message.value.byteLength > 0) {
          this.#output.push({ stream: message.case, data: message.value });
        }
        return;
      case "dataTicket":
        this.#takeDataConnection(message.value);
        return;
      case "started":
        if (this.#pid === undefined && message.value.pid > 0) {
          this.#pid = message.value.pid;
          this.#resolveStarted(this.#pid);
        }
        return;
      case "exit":
        this.#exitDetail = exitStatusOf(message.value);
        return;
      case "stdinConsumed": {
        // Never past what was sent: a guest must not make this side send more than the window.
        this.#stdinConsumed = Math.min(this.#stdinSent, Math.max(this.#stdinConsumed, Number(message.value)));
        this.#sendStdin();
        return;
      }
      case "exitCode":
        this.#exitCode = message.value;
        // Nothing more to send: the command is gone.
        this.#endWrites();
        return;
      default:
        return;
    }
  }

  #takeDataConnection(ticket: string): void {
    if (!this.#asksForData || this.#dataRead || !isTicket(ticket) || this.#exitCode !== undefined) {
      this.#protocolError("a data-connection ticket that was not asked for, not the first, or malformed");
      return;
    }
    const read = this.#readDataConnection(ticket);
    this.#dataRead = read;
    // A loss while the call is still open fails the command at once.
    read.catch((error: unknown) => this.#failData(error));
  }

  // The command's output from the data connection into the queue, until its end frame;
  // only stdout and stderr may come on it.
  async #readDataConnection(ticket: string): Promise<void> {
    const channel = this.#channel as GuestChannel;
    const socket = await channel.openDataConnection(ticket, this.#options.signal);
    this.#dataSocket = socket;
    if (this.#finished) {
      socket.destroy();
      return;
    }
    const frames = untilQuietAfterCall(readFrames(socket, ExecResponseSchema), socket, () => this.#callEnded);
    for await (const { response } of frames) {
      if (response.case !== "stdout" && response.case !== "stderr") {
        throw new DataConnectionError(`${response.case ?? "an empty message"} on the data connection`, "protocol");
      }
      if (response.value.byteLength > 0) this.#output.push({ stream: response.case, data: response.value });
      if (this.#dataHold) await this.#dataHold.promise;
      if (this.#finished) return;
    }
  }

  #holdData(): void {
    if (this.#dataHold) return;
    let release!: () => void;
    const promise = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#dataHold = { promise, release };
  }

  #releaseData(): void {
    const hold = this.#dataHold;
    this.#dataHold = undefined;
    hold?.release();
  }

  #failData(error: unknown): void {
    if (this.#finished) return;
    if (error instanceof DataConnectionError && error.kind === "protocol") {
      this.#protocolError(`protocol error on the data connection: ${error.message}`);
    } else {
      const text = error instanceof Error ? error.message : String(error);
      this.#fail(
        error instanceof GuestError
          ? error
          : new GuestError(Code.UNAVAILABLE, `the data connection to the agent was lost: ${text}`, {
              reason: "connection-lost",
              context: this.#where,
              cause: error,
            }),
      );
    }
    this.#call?.cancel();
  }

  #protocolError(text: string): void {
    this.#fail(new GuestError(Code.INTERNAL, text, { reason: "protocol", context: this.#where }));
    this.#call?.cancel();
  }

  #onStreamEnd(): void {
    if (this.#exitCode === undefined) {
      this.#fail(
        new GuestError(Code.INTERNAL, "the agent ended the call without an exit code", {
          reason: "protocol",
          context: this.#where,
        }),
      );
      return;
    }
    const detail = this.#exitDetail;
    const exit: ExitStatus =
      detail && detail.code === this.#exitCode
        ? detail
        : {
            code: this.#exitCode,
            signal: null,
            timedOut: false,
            truncated: false,
            startFailed: false,
            startError: null,
            unknown: this.#exitCode === -1,
          };
    this.#finish();
    this.#resolveStarted(this.#pid);
    this.#output.end();
    this.#resolveExit(exit);
  }

  #onFailedStatus(status: grpc.StatusObject): void {
    // The existing Go agent fails the call with UNKNOWN `start command: fork/exec PATH:
    // no such file or directory` when the command cannot start; for such an agent that
    // text is the only sign of it, and it is reported as the start failure it is.
    const text = status.details ?? "";
    if (this.#control === false && status.code === Code.UNKNOWN && text.startsWith("start command:")) {
      const notFound = /no such file or directory|executable file not found/.test(text);
      this.#finish();
      this.#resolveStarted(undefined);
      this.#output.end();
      this.#resolveExit({
        code: notFound ? 127 : 126,
        signal: null,
        timedOut: false,
        truncated: false,
        startFailed: true,
        startError: cutText(text, MAX_GUEST_MESSAGE),
        unknown: false,
      });
      return;
    }
    this.#fail(errorFromStatus(status, this.#where));
  }

  // Ends the call from this side (abort, client closed) with `error` as the outcome.
  #abandon(error: GuestError): void {
    if (this.#finished) return;
    this.#fail(error);
    this.#call?.cancel();
  }

  #fail(error: GuestError): void {
    if (this.#finished) return;
    this.#finish();
    this.#rejectStarted(error);
    this.#output.fail(error);
    this.#rejectExit(error);
  }

  #finish(): void {
    this.#finished = true;
    this.#dataSocket?.destroy();
    this.#releaseData();
    this.#writable = false;
    this.#untrack();
    this.#setCallUp(false);
    // A stdin stream nobody will read again: let pending writes complete as discarded.
    this.#call?.resume();
    for (const { sent } of this.#stdinWaiting.splice(0)) sent?.();
  }

  // A signal or resize: queued until the call is up, dropped with a warning when the
  // agent turns out not to understand it.
  #sendControl(message: ExecRequest): void {
    if (this.#finished || !this.#writable) return;
    if (!this.#call) {
      this.#pending.push(message);
      return;
    }
    if (this.#control === false) {
      if (message.request.case === "signal") {
        this.#channel?.warn(`${this.#where}: ${this.#noSignals().details}: ${message.request.value.name} was not sent`);
      } else if (!this.#warnedResize) {
        this.#warnedResize = true;
        this.#channel?.warn(
          `${this.#where}: the agent cannot resize a terminal (it speaks only the original guest protocol)`,
        );
      }
      return;
    }
    this.#write(message);
  }

  #write(message: ExecRequest, callback?: () => void): void {
    if (!this.#writable || !this.#call) {
      callback?.();
      return;
    }
    this.#call.write(message, callback ? () => callback() : undefined);
  }

  // Sends waiting stdin while less than the window is in flight (see ExecResponse.stdin_consumed).
  #sendStdin(): void {
    while (this.#stdinWaiting.length > 0 && this.#stdinSent - this.#stdinConsumed < EXEC_STDIN_WINDOW_BYTES) {
      const { message, bytes, sent } = this.#stdinWaiting.shift() as WaitingStdin;
      this.#stdinSent += bytes;
      this.#write(message, sent);
    }
  }

  // EOF on the command's stdin: `stdin_close` keeps the stream open for signals and
  // resizes; an agent without it knows only the half-close.
  #sendStdinEof(): void {
    if (this.#control) this.#write(create(ExecRequestSchema, { request: { case: "stdinClose", value: {} } }));
    else this.#endWrites();
  }

  #endWrites(): void {
    if (!this.#writable) return;
    this.#writable = false;
    this.#call?.end();
  }

  #createStdin(): Writable {
    return new Writable({
      highWaterMark: CHUNK_SIZE,
      write: (chunk: Buffer, _encoding, callback) => {
        void this.#callUp.then((up) => {
          if (!up || chunk.length === 0) {
            // The command is gone (or never came): its input goes nowhere, as with a
            // closed pipe, without an error event nobody listens for.
            callback();
            return;
          }
          for (let offset = 0; offset < chunk.length; offset += CHUNK_SIZE) {
            const piece = chunk.subarray(offset, offset + CHUNK_SIZE);
            const last = offset + CHUNK_SIZE >= chunk.length;
            const message = create(ExecRequestSchema, { request: { case: "stdin", value: piece } });
            // The callback of the last piece fires once grpc-js handed it to HTTP/2 (with
            // the credit, once the agent had room for it; without, HTTP/2's flow control
            // waits for the agent): that is the backpressure.
            if (this.#stdinCredit) {
              this.#stdinWaiting.push({ message, bytes: piece.length, sent: last ? callback : undefined });
            } else {
              this.#write(message, last ? callback : undefined);
            }
          }
          if (this.#stdinCredit) this.#sendStdin();
        });
      },
      final: (callback) => {
        void this.#callUp.then((up) => {
          if (up && !this.#finished) this.#sendStdinEof();
          callback();
        });
      },
    });
  }
}
