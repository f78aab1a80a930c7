// Port forwarding: a TCP connection to a port inside the guest, as a Duplex on the host,
// over one ForwardPort call (framing in proto/guest/guest.proto); and a local listener
// that forwards each connection it accepts through a call of its own.
//
// Backpressure both ways: a write completes once grpc-js handed the bytes to HTTP/2,
// whose flow control waits for the agent; the call is paused while the Duplex's reader
// does not keep up. Each direction's end travels on its own (half-close): ending the
// Duplex sends `eof`, the guest side's end arrives as the Duplex's end.
//
// Where the agent offers it, the bytes move on a data connection instead (guest.proto,
// "Data connections"): `data` frames each way, each direction ending with an end frame,
// the call keeping only `connected` and the outcome. The Duplex is the same either way.

import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  Capability,
  CHUNK_SIZE,
  cutText,
  type ForwardPortRequest,
  ForwardPortRequestSchema,
  type ForwardPortResponse,
  ForwardPortResponseSchema,
  FrameWriter,
  MAX_GUEST_CODE,
  MAX_GUEST_MESSAGE,
  readFrames,
} from "@guestkit/protocol";
import { Code, cancelledError, errorFromStatus, GuestError, toGuestError } from "./guest-error.js";
import { askForDataConnection, ticketOf, untilQuietAfterCall } from "./transport/data-connection.js";
import type { GuestConnection } from "./transport/guest-connection.js";

/** Options of forwardPort(). */
export interface ForwardPortOptions {
  /** The host to connect to, as seen from inside the guest. Default 127.0.0.1. */
  host?: string;
  /** Aborting before the connection is up rejects; after, it destroys the Duplex. */
  signal?: AbortSignal;
  /** How long to retry reaching an agent that is still coming up. Default: the client's. */
  connectTimeoutMs?: number;
}

/**
 * Connects to `port` inside the guest; resolves with the connection once the agent
 * reached it. Rejects with a GuestError: reason `forward-failed` (with the errno in the
 * message) when the agent could not connect, `unsupported` for an agent without
 * ForwardPort, or any connection failure.
 */
export async function forwardPort(
  connection: GuestConnection,
  port: number,
  options: ForwardPortOptions = {},
): Promise<Duplex> {
  const host = options.host ?? "127.0.0.1";
  const where = `${connection.context}: forward to ${host}:${port}`;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new GuestError(Code.INVALID_ARGUMENT, `bad port ${port}: a TCP port is 1-65535`, { context: where });
  }
  const channel = await connection.ready({
    ...(options.connectTimeoutMs !== undefined ? { deadline: Date.now() + options.connectTimeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (!channel.has(Capability.PORT_FORWARD)) {
    throw new GuestError(Code.UNIMPLEMENTED, "the agent does not forward ports (it did not announce port-forward)", {
      reason: "unsupported",
      context: where,
    });
  }
  const asksForData = channel.has(Capability.DATA_CONNECTION);
  const call = channel.guest.forwardPort(asksForData ? askForDataConnection(channel.metadata()) : channel.metadata());
  call.write(create(ForwardPortRequestSchema, { request: { case: "start", value: { host, port } } }));
  // The agent sends `connected` only once the data connection came: it is opened as
  // soon as the ticket is in.
  const dataSocket = asksForData
    ? ticketOf(call).then((ticket) =>
        ticket === undefined ? undefined : channel.openDataConnection(ticket, options.signal),
      )
    : Promise.resolve(undefined);
  // A failure to open it is reported through the call's own outcome (the agent gives up).
  dataSocket.catch(() => {});
  return new Promise<Duplex>((resolve, reject) => {
    const signal = options.signal;
    const onAbort = () => {
      call.cancel();
      void dataSocket.then(
        (socket) => socket?.destroy(),
        () => undefined,
      );
      reject(cancelledError(signal, where));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = () => signal?.removeEventListener("abort", onAbort);
    call.on("error", () => {});
    const onFirst = (response: ForwardPortResponse) => {
      const message = response.response;
      call.off("status", onEarlyStatus);
      settle();
      if (message.case === "connected") {
        dataSocket.then(
          (socket) =>
            resolve(socket ? new FramedForwardedConnection(call, socket, where) : new ForwardedConnection(call, where)),
          (error: unknown) => {
            call.cancel();
            reject(toGuestError(error, where));
          },
        );
        return;
      }
      void dataSocket.then(
        (socket) => socket?.destroy(),
        () => undefined,
      );
      call.cancel();
      if (message.case === "connectError") {
        const code = cutText(message.value.code, MAX_GUEST_CODE);
        const text = cutText(message.value.message, MAX_GUEST_MESSAGE);
        reject(
          new GuestError(Code.FAILED_PRECONDITION, `${text} (${code})`, { reason: "forward-failed", context: where }),
        );
      } else {
        reject(
          new GuestError(Code.INTERNAL, "the agent answered ForwardPort out of order", {
            reason: "protocol",
            context: where,
          }),
        );
      }
    };
    const onEarlyStatus = (status: grpc.StatusObject) => {
      call.off("data", onFirst);
      settle();
      reject(
        status.code === Code.OK
          ? new GuestError(Code.INTERNAL, "the agent ended ForwardPort without an answer", {
              reason: "protocol",
              context: where,
            })
          : errorFromStatus(status, where),
      );
    };
    call.once("data", onFirst);
    call.once("status", onEarlyStatus);
  });
}

class ForwardedConnection extends Duplex {
  readonly #call: grpc.ClientDuplexStream<ForwardPortRequest, ForwardPortResponse>;
  readonly #where: string;
  #ended = false;

  constructor(call: grpc.ClientDuplexStream<ForwardPortRequest, ForwardPortResponse>, where: string) {
    super({ allowHalfOpen: true });
    this.#call = call;
    this.#where = where;
    call.on("data", (response: ForwardPortResponse) => {
      const message = response.response;
      if (message.case === "data") {
        if (!this.push(message.value)) call.pause();
      } else if (message.case === "eof") {
        this.push(null);
      }
    });
    call.on("status", (status: grpc.StatusObject) => {
      this.#ended = true;
      if (status.code !== Code.OK) this.destroy(errorFromStatus(status, this.#where));
      else if (!this.readableEnded) this.push(null);
    });
  }

  override _read(): void {
    this.#call.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#ended) {
      callback(new GuestError(Code.UNAVAILABLE, "the forwarded connection is closed", { context: this.#where }));
      return;
    }
    for (let offset = 0; offset < chunk.length; offset += CHUNK_SIZE) {
      const piece = chunk.subarray(offset, offset + CHUNK_SIZE);
      const last = offset + CHUNK_SIZE >= chunk.length;
      this.#call.write(
        create(ForwardPortRequestSchema, { request: { case: "data", value: piece } }),
        last ? () => callback() : undefined,
      );
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.#ended) {
      this.#call.write(create(ForwardPortRequestSchema, { request: { case: "eof", value: {} } }));
      this.#call.end();
    }
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Torn down before both directions ended: the agent resets its side.
    if (!this.#ended) this.#call.cancel();
    callback(error);
  }
}

/**
 * The forwarded connection on a data connection: `data` frames each way, each
 * direction's end an end frame. The call says only how it ended.
 */
class FramedForwardedConnection extends Duplex {
  readonly #call: grpc.ClientDuplexStream<ForwardPortRequest, ForwardPortResponse>;
  readonly #socket: Socket;
  readonly #frames: FrameWriter<typeof ForwardPortRequestSchema>;
  readonly #where: string;
  #callEnded = false;
  #readDone = false;
  #writeDone = false;
  #wantMore: (() => void) | undefined;

  constructor(call: grpc.ClientDuplexStream<ForwardPortRequest, ForwardPortResponse>, socket: Socket, where: string) {
    super({ allowHalfOpen: true });
    this.#call = call;
    this.#socket = socket;
    this.#where = where;
    this.#frames = new FrameWriter(socket, ForwardPortRequestSchema);
    call.on("status", (status: grpc.StatusObject) => {
      this.#callEnded = true;
      if (status.code !== Code.OK) this.destroy(errorFromStatus(status, this.#where));
    });
    void this.#readFrames();
  }

  async #readFrames(): Promise<void> {
    const frames = untilQuietAfterCall(
      readFrames(this.#socket, ForwardPortResponseSchema),
      this.#socket,
      () => this.#callEnded,
    );
    try {
      for await (const { response } of frames) {
        if (response.case !== "data") continue;
        if (!this.push(response.value)) {
          await new Promise<void>((resolve) => {
            this.#wantMore = resolve;
          });
        }
        if (this.destroyed) return;
      }
    } catch (error) {
      if (!this.destroyed) {
        const text = error instanceof Error ? error.message : String(error);
        this.destroy(
          new GuestError(Code.UNAVAILABLE, `the data connection to the agent was lost: ${text}`, {
            reason: "connection-lost",
            context: this.#where,
          }),
        );
      }
      return;
    }
    this.#readDone = true;
    this.push(null);
    this.#closeWhenDone();
  }

  override _read(): void {
    const wantMore = this.#wantMore;
    this.#wantMore = undefined;
    wantMore?.();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    void (async () => {
      for (let offset = 0; offset < chunk.length; offset += CHUNK_SIZE) {
        const piece = chunk.subarray(offset, offset + CHUNK_SIZE);
        await this.#frames.write(create(ForwardPortRequestSchema, { request: { case: "data", value: piece } }));
      }
    })().then(
      () => callback(),
      () => callback(new GuestError(Code.UNAVAILABLE, "the forwarded connection is closed", { context: this.#where })),
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#frames.end().then(
      () => {
        this.#writeDone = true;
        this.#closeWhenDone();
        callback();
      },
      () => callback(new GuestError(Code.UNAVAILABLE, "the forwarded connection is closed", { context: this.#where })),
    );
  }

  // Both directions ended: the data connection has served its purpose.
  #closeWhenDone(): void {
    if (this.#readDone && this.#writeDone) this.#socket.destroy();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Torn down before both directions ended: the agent resets its side.
    if (!(this.#readDone && this.#writeDone)) this.#call.cancel();
    this.#socket.destroy();
    this.#wantMore?.();
    callback(error);
  }
}

/** Options of listenForward(). */
export interface ListenForwardOptions {
  /** Local port; 0 picks one. */
  localPort: number;
  /** Local address to listen on. Default 127.0.0.1. */
  localAddress?: string;
  /** Port inside the guest. */
  guestPort: number;
  /** Host inside the guest. Default 127.0.0.1. */
  guestHost?: string;
  /** Told about each connection that could not be forwarded (it is closed). */
  onError?: (error: GuestError) => void;
}

/** A local listener forwarding into the guest. */
export interface ForwardListener {
  readonly address: AddressInfo;
  /** Connections being forwarded now. */
  readonly active: number;
  /** Stops listening and closes every forwarded connection. */
  close(): Promise<void>;
}

/** Listens locally and forwards each accepted connection to the guest port through a call of its own. */
export async function listenForward(
  connection: GuestConnection,
  options: ListenForwardOptions,
): Promise<ForwardListener> {
  const open = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (local) => {
    open.add(local);
    local.on("close", () => open.delete(local));
    local.on("error", () => {});
    local.pause();
    forwardPort(connection, options.guestPort, options.guestHost ? { host: options.guestHost } : {}).then(
      (remote) => {
        remote.on("error", () => local.destroy());
        local.on("error", () => remote.destroy());
        local.on("close", () => remote.destroy());
        remote.pipe(local);
        local.pipe(remote);
        local.resume();
      },
      (error: unknown) => {
        options.onError?.(toGuestError(error, connection.context));
        local.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.localPort, options.localAddress ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    get active() {
      return open.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
