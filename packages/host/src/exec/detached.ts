// Detached commands from the host: start one that outlives the call, list them, attach
// to one (what it kept, then live output and its exit), signal, kill or forget one. The
// agent's side and the wire are described at StartDetached in proto/guest/guest.proto.
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type AttachDetachedRequest,
  AttachDetachedRequestSchema,
  type AttachDetachedResponse,
  Capability,
  CHUNK_SIZE,
  ControlDetachedRequestSchema,
  cutText,
  type DetachedCommand,
  ListDetachedRequestSchema,
  type ListDetachedResponse,
  MAX_GUEST_CODE,
  StartDetachedRequestSchema,
  type StartDetachedResponse,
} from "@guestkit/protocol";
import { Code, errorFromStatus, GuestError, toGuestError } from "../guest-error.js";
import type { GuestChannel, GuestConnection } from "../transport/guest-connection.js";
import { type ExecOutput, type ExitStatus, exitStatusOf } from "./exec-handle.js";
import { buildExecStart, type ExecOptions, signalName } from "./exec-request.js";
import { OutputQueue } from "./output-queue.js";

/** Options of startDetached(): those of exec, a name, and whether stdin stays open. */
export interface StartDetachedOptions extends Omit<ExecOptions, "signal" | "stdin" | "unconsumedOutputLimit"> {
  /** Unique among the agent's detached commands; default: the agent makes an id. */
  name?: string;
  /** Keep stdin open for input through attach(); default: EOF at once. */
  stdin?: boolean;
}

/** A started detached command; `exit` is there only when it could not start. */
export interface DetachedStarted {
  readonly id: string;
  readonly pid: number;
  readonly exit?: ExitStatus;
}

/** A detached command as the agent lists it. */
export interface DetachedInfo {
  readonly id: string;
  readonly pid: number;
  /** The program's name (argv[0] only). */
  readonly command: string;
  readonly running: boolean;
  readonly startedAt: Date;
  readonly exitedAt: Date | null;
  readonly exit: ExitStatus | null;
  /** Output older than what the agent keeps was dropped. */
  readonly outputDropped: boolean;
  readonly tty: boolean;
}

/** Options of attach(). */
export interface AttachOptions {
  /** false: only what is kept (the logs), then the end. Default true: live output until the exit. */
  follow?: boolean;
  /** Give the handle a `stdin` stream; end() sends stdin EOF to the command. */
  stdin?: boolean;
}

/** An attached client: output (kept, then live), and the exit once the command ended. */
export interface AttachHandle extends AsyncIterable<ExecOutput> {
  readonly stdin: Writable | null;
  /**
   * Resolves with the exit once the command ended; with null when the attach ended
   * first (`follow: false` on a running command). Rejects if the call failed.
   */
  readonly exit: Promise<ExitStatus | null>;
  /** Some output was dropped before it reached this client (older than kept, or it read too slowly). */
  readonly outputDropped: boolean;
  kill(signal?: string | number): void;
  resize(rows: number, cols: number): void;
  /** Stops following; the command runs on. */
  detach(): void;
}

async function channelFor(connection: GuestConnection, what: string): Promise<GuestChannel> {
  const channel = await connection.ready();
  if (!channel.has(Capability.DETACHED)) {
    throw new GuestError(Code.UNIMPLEMENTED, "the agent has no detached commands (it did not announce detached)", {
      reason: "unsupported",
      context: `${connection.context}: ${what}`,
    });
  }
  return channel;
}

function unary<T>(start: (callback: (error: grpc.ServiceError | null, value?: T) => void) => void, where: string) {
  return new Promise<T>((resolve, reject) => {
    start((error, value) => {
      if (error) reject(errorFromStatus(error, where));
      else if (value === undefined) reject(new GuestError(Code.INTERNAL, "no response", { context: where }));
      else resolve(value);
    });
  });
}

/** Starts `argv` detached; resolves once the agent started it (or said why it could not). */
export async function startDetached(
  connection: GuestConnection,
  argv: readonly string[],
  options: StartDetachedOptions = {},
): Promise<DetachedStarted> {
  const where = `${connection.context}: exec -d ${argv[0]}`;
  const start = buildExecStart(argv, options, where);
  const channel = await channelFor(connection, "exec -d");
  const response = await unary<StartDetachedResponse>(
    (callback) =>
      channel.guest.startDetached(
        create(StartDetachedRequestSchema, { start, name: options.name ?? "", stdin: options.stdin === true }),
        channel.metadata(),
        {},
        callback,
      ),
    where,
  );
  return {
    id: cutText(response.id, MAX_GUEST_CODE),
    pid: response.pid,
    ...(response.exit?.startFailed ? { exit: exitStatusOf(response.exit) } : {}),
  };
}

/** Every detached command the agent holds. */
export async function listDetached(connection: GuestConnection): Promise<DetachedInfo[]> {
  const channel = await channelFor(connection, "ps");
  const response = await unary<ListDetachedResponse>(
    (callback) => channel.guest.listDetached(create(ListDetachedRequestSchema, {}), channel.metadata(), {}, callback),
    `${connection.context}: ps`,
  );
  return response.commands.map(infoOf);
}

function infoOf(command: DetachedCommand): DetachedInfo {
  return {
    id: cutText(command.id, MAX_GUEST_CODE),
    pid: command.pid,
    command: cutText(command.command, MAX_GUEST_CODE),
    running: command.running,
    startedAt: new Date(Number(command.startedAtMs)),
    exitedAt: command.exitedAtMs > 0n ? new Date(Number(command.exitedAtMs)) : null,
    exit: command.exit ? exitStatusOf(command.exit) : null,
    outputDropped: command.outputDropped,
    tty: command.tty,
  };
}

/** Sends a signal (`signal`), or ends it and all it started (`kill`), or forgets it (`remove`). */
export async function controlDetached(
  connection: GuestConnection,
  id: string,
  action: { signal: string | number } | { kill: true } | { remove: true },
): Promise<void> {
  const where = `${connection.context}: ${id}`;
  const channel = await channelFor(connection, "control");
  const wire =
    "signal" in action
      ? { case: "signal" as const, value: signalName(action.signal, where) }
      : "kill" in action
        ? { case: "kill" as const, value: true }
        : { case: "remove" as const, value: true };
  await unary(
    (callback) =>
      channel.guest.controlDetached(
        create(ControlDetachedRequestSchema, { id, action: wire }),
        channel.metadata(),
        {},
        callback,
      ),
    where,
  );
}

/** Attaches to a detached command (see AttachHandle). */
export function attachDetached(connection: GuestConnection, id: string, options: AttachOptions = {}): AttachHandle {
  return new Attached(connection, id, options);
}

class Attached implements AttachHandle {
  readonly stdin: Writable | null;
  readonly exit: Promise<ExitStatus | null>;
  outputDropped = false;
  readonly #where: string;
  readonly #output: OutputQueue<ExecOutput>;
  #call: grpc.ClientDuplexStream<AttachDetachedRequest, AttachDetachedResponse> | undefined;
  readonly #ready: Promise<boolean>;
  #resolve!: (exit: ExitStatus | null) => void;
  #reject!: (error: unknown) => void;
  #exit: ExitStatus | null = null;
  #done = false;

  constructor(connection: GuestConnection, id: string, options: AttachOptions) {
    this.#where = `${connection.context}: attach ${id}`;
    this.exit = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.exit.catch(() => {});
    this.#output = new OutputQueue<ExecOutput>({
      highWaterBytes: 1024 * 1024,
      unconsumedLimitBytes: 1024 * 1024,
      pause: () => this.#call?.pause(),
      resume: () => this.#call?.resume(),
    });
    this.#ready = this.#open(connection, id, options.follow !== false);
    this.stdin = options.stdin ? this.#createStdin() : null;
  }

  async #open(connection: GuestConnection, id: string, follow: boolean): Promise<boolean> {
    let channel: GuestChannel;
    try {
      channel = await channelFor(connection, `attach ${id}`);
    } catch (error) {
      this.#fail(toGuestError(error, this.#where));
      return false;
    }
    const call = channel.guest.attachDetached(channel.metadata());
    this.#call = call;
    call.on("error", () => {});
    call.on("data", (response: AttachDetachedResponse) => {
      const message = response.response;
      if (message.case === "stdout" || message.case === "stderr") {
        if (message.value.byteLength > 0) this.#output.push({ stream: message.case, data: message.value });
      } else if (message.case === "dropped") {
        this.outputDropped = true;
      } else if (message.case === "exit") {
        this.#exit = exitStatusOf(message.value);
      }
    });
    call.on("status", (status: grpc.StatusObject) => {
      if (this.#done) return;
      if (status.code !== Code.OK) {
        this.#fail(errorFromStatus(status, this.#where));
        return;
      }
      this.#done = true;
      this.#output.end();
      this.#resolve(this.#exit);
    });
    call.write(create(AttachDetachedRequestSchema, { request: { case: "attach", value: { id, follow } } }));
    return true;
  }

  #fail(error: GuestError): void {
    if (this.#done) return;
    this.#done = true;
    this.#output.fail(error);
    this.#reject(error);
  }

  [Symbol.asyncIterator](): AsyncIterator<ExecOutput> {
    return this.#output[Symbol.asyncIterator]();
  }

  kill(signal: string | number = "SIGTERM"): void {
    const name = signalName(signal, this.#where);
    this.#send(create(AttachDetachedRequestSchema, { request: { case: "signal", value: { name } } }));
  }

  resize(rows: number, cols: number): void {
    this.#send(create(AttachDetachedRequestSchema, { request: { case: "resize", value: { rows, cols } } }));
  }

  detach(): void {
    if (this.#done) return;
    this.#done = true;
    this.#call?.cancel();
    this.#output.end();
    this.#resolve(null);
  }

  #send(message: AttachDetachedRequest, callback?: () => void): void {
    void this.#ready.then((up) => {
      if (!up || this.#done || !this.#call) {
        callback?.();
        return;
      }
      this.#call.write(message, callback ? () => callback() : undefined);
    });
  }

  #createStdin(): Writable {
    return new Writable({
      highWaterMark: CHUNK_SIZE,
      write: (chunk: Buffer, _encoding, callback) => {
        for (let offset = 0; offset < chunk.length; offset += CHUNK_SIZE) {
          const last = offset + CHUNK_SIZE >= chunk.length;
          this.#send(
            create(AttachDetachedRequestSchema, {
              request: { case: "stdin", value: chunk.subarray(offset, offset + CHUNK_SIZE) },
            }),
            last ? () => callback() : undefined,
          );
        }
      },
      final: (callback) => {
        this.#send(create(AttachDetachedRequestSchema, { request: { case: "stdinClose", value: {} } }), () =>
          callback(),
        );
      },
    });
  }
}
