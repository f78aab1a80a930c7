// gRPC spoken by hand: node:http2 on the agent's Unix socket, with every byte of the
// length-prefixed framing under the caller's control. A grpc-js client can only send
// well-formed calls; reliability tests and the fuzzer need the malformed ones too (bad
// length prefixes, a compressed flag without an encoding, garbage protobuf, unknown
// methods, streams reset half-way) to prove that the agent answers each with a clear
// status and keeps serving.
import { type ClientHttp2Session, type ClientHttp2Stream, connect as connectHttp2 } from "node:http2";
import { connect as connectSocket } from "node:net";
import { create, fromBinary, type MessageInitShape, type MessageShape, toBinary } from "@bufbuild/protobuf";
import {
  CopyFromGuestRequestSchema,
  CopyFromGuestResponseSchema,
  CopyToGuestRequestSchema,
  CopyToGuestResponseSchema,
  ExecRequestSchema,
  ExecResponseSchema,
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  StatPathRequestSchema,
  StatPathResponseSchema,
} from "@guestkit/protocol";

/** The agent's methods by path, with the request and response schemas of each. */
export const GUEST_METHODS = {
  exec: { path: "/guest.GuestService/Exec", request: ExecRequestSchema, response: ExecResponseSchema },
  copyToGuest: {
    path: "/guest.GuestService/CopyToGuest",
    request: CopyToGuestRequestSchema,
    response: CopyToGuestResponseSchema,
  },
  copyFromGuest: {
    path: "/guest.GuestService/CopyFromGuest",
    request: CopyFromGuestRequestSchema,
    response: CopyFromGuestResponseSchema,
  },
  statPath: { path: "/guest.GuestService/StatPath", request: StatPathRequestSchema, response: StatPathResponseSchema },
  health: {
    path: "/grpc.health.v1.Health/Check",
    request: HealthCheckRequestSchema,
    response: HealthCheckResponseSchema,
  },
} as const;

/** A method of GUEST_METHODS. */
export type GuestMethod = keyof typeof GUEST_METHODS;

/** The request message (init form) of a method. */
export type RequestInit<M extends GuestMethod> = MessageInitShape<(typeof GUEST_METHODS)[M]["request"]>;

/** Encodes one request message of `method` (protobuf bytes, without the gRPC prefix). */
export function encodeRequest<M extends GuestMethod>(method: M, init: RequestInit<M>): Uint8Array {
  const schema = GUEST_METHODS[method].request;
  // The schema and init types are tied by M; TypeScript cannot see through the union.
  return toBinary(schema as never, create(schema as never, init as never));
}

/** Decodes one response message of `method`. Throws on bytes that are not one. */
export function decodeResponse<M extends GuestMethod>(
  method: M,
  bytes: Uint8Array,
): MessageShape<(typeof GUEST_METHODS)[M]["response"]> {
  return fromBinary(GUEST_METHODS[method].response as never, bytes);
}

/**
 * One gRPC length-prefixed message: flag byte, 4-byte big-endian length, payload.
 * `declaredLength` and `flag` may lie on purpose.
 */
export function grpcFrame(payload: Uint8Array, options: { flag?: number; declaredLength?: number } = {}): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt8(options.flag ?? 0, 0);
  prefix.writeUInt32BE(options.declaredLength ?? payload.byteLength, 1);
  return Buffer.concat([prefix, payload]);
}

/** How one raw call ended. */
export interface RawCallResult {
  /** The HTTP :status, if response headers came. */
  readonly httpStatus: number | undefined;
  /** grpc-status from the trailers (or a trailers-only response), if any. */
  readonly grpcStatus: number | undefined;
  /** grpc-message, percent-decoded. */
  readonly grpcMessage: string;
  /** The response messages' payloads, unframed. */
  readonly messages: Buffer[];
  /** Response bytes that did not form whole messages (a broken server). */
  readonly trailingBytes: number;
  /** HTTP/2 RST_STREAM code the stream closed with (0 = none / NO_ERROR). */
  readonly rstCode: number;
  /** The call was cut off by `timeoutMs`. */
  readonly timedOut: boolean;
}

/** Options of RawGrpcConnection.call. */
export interface RawCallOptions {
  /** Request body chunks, written in order (each typically a grpcFrame). */
  body?: readonly Uint8Array[];
  /** Extra or overriding request headers. */
  headers?: Record<string, string>;
  /** Half-close after the body (default true); false leaves the request open until reset or timeout. */
  endStream?: boolean;
  /** Reset the stream (RST_STREAM CANCEL) this long after the body was written. */
  resetAfterMs?: number;
  /** Give up (and reset the stream) after this long. Default 10 s. */
  timeoutMs?: number;
  /** Stop collecting response messages beyond this many bytes (they are still read). Default 16 MiB. */
  maxResponseBytes?: number;
}

/** An HTTP/2 connection to an agent's Unix socket. */
export class RawGrpcConnection {
  readonly session: ClientHttp2Session;
  readonly #closed: Promise<void>;

  private constructor(session: ClientHttp2Session) {
    this.session = session;
    this.#closed = new Promise((resolve) => session.once("close", () => resolve()));
    // Errors end the session; callers see them as failed calls and closed().
    session.on("error", () => {});
  }

  /** Connects and waits for the HTTP/2 session to be up. */
  static async open(socketPath: string): Promise<RawGrpcConnection> {
    const session = connectHttp2("http://agent", {
      createConnection: () => connectSocket(socketPath),
      // Tests write messages of 16 MiB and more at once. With Node's default (10 MB of
      // data a session may buffer) this client reset its own stream (ENHANCE_YOUR_CALM)
      // whenever the agent read slower than it wrote: under load, 2 runs in 5.
      maxSessionMemory: 256,
    });
    const connection = new RawGrpcConnection(session);
    await new Promise<void>((resolve, reject) => {
      session.once("connect", () => resolve());
      session.once("error", reject);
      session.once("close", () => reject(new Error("the HTTP/2 session closed before it was up")));
    });
    return connection;
  }

  /** Whether the session is still usable. */
  get alive(): boolean {
    return !this.session.closed && !this.session.destroyed;
  }

  /** Sends one call; never rejects for what the server does (see RawCallResult). */
  call(path: string, options: RawCallOptions = {}): Promise<RawCallResult> {
    const limit = options.maxResponseBytes ?? 16 * 1024 * 1024;
    return new Promise((resolve) => {
      let stream: ClientHttp2Stream;
      const collected: Buffer[] = [];
      let pending: Buffer = Buffer.alloc(0);
      let kept = 0;
      let httpStatus: number | undefined;
      let grpcStatus: number | undefined;
      let grpcMessage = "";
      let timedOut = false;
      const readStatus = (headers: Record<string, unknown>) => {
        if (headers["grpc-status"] !== undefined) grpcStatus = Number(headers["grpc-status"]);
        const message = headers["grpc-message"];
        if (typeof message === "string") grpcMessage = safeDecode(message);
      };
      try {
        stream = this.session.request({
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          ...options.headers,
        });
      } catch {
        resolve({
          httpStatus,
          grpcStatus,
          grpcMessage: "the session refused a new stream",
          messages: [],
          trailingBytes: 0,
          rstCode: -1,
          timedOut,
        });
        return;
      }
      const timer = setTimeout(() => {
        timedOut = true;
        stream.close();
      }, options.timeoutMs ?? 10_000);
      stream.on("response", (headers) => {
        httpStatus = Number(headers[":status"]);
        readStatus(headers);
      });
      stream.on("trailers", (headers) => readStatus(headers));
      stream.on("data", (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        while (pending.length >= 5) {
          const length = pending.readUInt32BE(1);
          if (pending.length < 5 + length) break;
          const message = pending.subarray(5, 5 + length);
          pending = pending.subarray(5 + length);
          if (kept + length <= limit) {
            collected.push(Buffer.from(message));
            kept += length;
          }
        }
      });
      stream.on("error", () => {});
      // The server has finished the call (trailers sent): our side has nothing more to say.
      stream.on("end", () => stream.close());
      stream.on("close", () => {
        clearTimeout(timer);
        resolve({
          httpStatus,
          grpcStatus,
          grpcMessage,
          messages: collected,
          trailingBytes: pending.length,
          rstCode: stream.rstCode ?? 0,
          timedOut,
        });
      });
      for (const chunk of options.body ?? []) stream.write(chunk);
      if (options.endStream !== false) stream.end();
      if (options.resetAfterMs !== undefined) {
        const reset = setTimeout(() => stream.close(), options.resetAfterMs);
        stream.once("close", () => clearTimeout(reset));
      }
    });
  }

  /** Closes the session (and destroys it if it does not close within a second). */
  async close(): Promise<void> {
    if (this.session.destroyed) return;
    this.session.close();
    const timer = setTimeout(() => this.session.destroy(), 1000);
    await this.#closed;
    clearTimeout(timer);
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
