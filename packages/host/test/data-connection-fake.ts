// A hostile guest agent that speaks data connections (@guestkit/protocol's
// data-connection.ts), in the test's own process so each test scripts it directly.
//
// It listens on a temp Unix socket and reads the first byte of each connection, as the
// real agent does: "G" starts a data connection (the 8-byte magic and the 32-byte
// ticket are read, then the socket goes to whatever call offered that ticket); anything
// else is piped both ways to an inner grpc-js server on a second, private Unix socket.
// That server announces the capabilities it is given on every call (health checks
// included) and serves the GuestService handlers the test scripts. It records every
// call's request headers and every data connection, so a test can tell what the host
// asked for and whether it dialed.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CAPABILITIES_METADATA_KEY,
  Capability,
  type CopyFromGuestRequest,
  type CopyFromGuestResponse,
  CopyFromGuestResponseSchema,
  type CopyToGuestRequest,
  type CopyToGuestResponse,
  CopyToGuestResponseSchema,
  createGrpcServiceDefinition,
  DATA_CONNECTION_MAGIC,
  DATA_CONNECTION_TICKET_KEY,
  type ExecRequest,
  type ExecResponse,
  type ForwardPortRequest,
  type ForwardPortResponse,
  guestServiceDefinition,
  Health,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
  MAX_MESSAGE_BYTES,
  type StatPathRequest,
  type StatPathResponse,
  StatPathResponseSchema,
  TICKET_BYTES,
} from "@guestkit/protocol";
import { sendWhenWritable } from "@guestkit/testkit";

/** What guestkit's agent announces that matters to copies, data connections included. */
export const DATA_CAPABILITIES: readonly string[] = [
  Capability.EXEC_CONTROL,
  Capability.COPY_MULTI_ENTRY,
  Capability.COPY_BATCH,
  Capability.KEEPALIVE_PINGS,
  Capability.DATA_CONNECTION,
];

/** The same without `data-connection`: an agent that never offers one. */
export const IN_BAND_CAPABILITIES: readonly string[] = DATA_CAPABILITIES.filter(
  (name) => name !== Capability.DATA_CONNECTION,
);

export type CopyFromCall = grpc.ServerWritableStream<CopyFromGuestRequest, CopyFromGuestResponse>;
export type CopyToCall = grpc.ServerReadableStream<CopyToGuestRequest, CopyToGuestResponse>;

/** What a scripted handler can do beside its call. */
export interface FakeTools {
  /**
   * Hands `call` a ticket in its response headers (sent now) and resolves with the
   * connection that presents it, positioned after the preamble and paused.
   */
  offer(call: { sendMetadata(headers: grpc.Metadata): void }): Promise<Socket>;
  /** A ticket to send as the test likes (Exec sends it in a message), and its connection. */
  ticket(): { ticket: string; connection: Promise<Socket> };
}

/** The handlers a test scripts; any left out answers UNIMPLEMENTED. */
export interface FakeScript {
  /** Announced in `guestkit-capabilities`; default DATA_CAPABILITIES. */
  capabilities?: readonly string[];
  copyFromGuest?: (call: CopyFromCall, tools: FakeTools) => Promise<void> | void;
  copyToGuest?: (
    call: CopyToCall,
    answer: (response: MessageInitShape<typeof CopyToGuestResponseSchema>) => void,
    tools: FakeTools,
  ) => Promise<void> | void;
  statPath?: (request: StatPathRequest) => MessageInitShape<typeof StatPathResponseSchema>;
  exec?: (call: ExecCall, tools: FakeTools) => Promise<void> | void;
  forwardPort?: (call: ForwardCall, tools: FakeTools) => Promise<void> | void;
}

export type ExecCall = grpc.ServerDuplexStream<ExecRequest, ExecResponse>;
export type ForwardCall = grpc.ServerDuplexStream<ForwardPortRequest, ForwardPortResponse>;

/** A call's method and request headers, as the fake received them. */
export interface RecordedCall {
  readonly method: string;
  readonly metadata: grpc.Metadata;
}

/** A running fake. */
export interface DataConnectionFake {
  /** Where the host dials. */
  readonly socketPath: string;
  /** GuestService calls received, in order (health checks not included). */
  readonly calls: RecordedCall[];
  /** Connections that began with "G" (a data connection, or an attempt at one). */
  readonly dataConnections: number;
  /** Tickets presented on data connections, as hex (known or not). */
  readonly presented: string[];
  /** Closes the listeners and every connection, and removes the temp dir. */
  close(): Promise<void>;
}

const PREAMBLE_BYTES = DATA_CONNECTION_MAGIC.length + TICKET_BYTES;

/** Starts a fake for `script`; resolves once it accepts connections. */
export async function startDataConnectionFake(script: FakeScript): Promise<DataConnectionFake> {
  const dir = await mkdtemp(join(tmpdir(), "guestkit-data-fake-"));
  const socketPath = join(dir, "agent.sock");
  const innerPath = join(dir, "inner.sock");
  const calls: RecordedCall[] = [];
  const presented: string[] = [];
  const sockets = new Set<Socket>();
  const waiting = new Map<string, (socket: Socket) => void>();
  let dataConnections = 0;

  const tools: FakeTools = {
    offer(call) {
      const { ticket, connection } = tools.ticket();
      const headers = new grpc.Metadata();
      headers.set(DATA_CONNECTION_TICKET_KEY, ticket);
      call.sendMetadata(headers);
      return connection;
    },
    ticket() {
      const ticket = randomBytes(TICKET_BYTES).toString("hex");
      const connection = new Promise<Socket>((resolve) => waiting.set(ticket, resolve));
      return { ticket, connection };
    },
  };

  const capabilities = (script.capabilities ?? DATA_CAPABILITIES).join(",");
  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    interceptors: [
      (_method, call) =>
        new grpc.ServerInterceptingCall(call, {
          sendMetadata(metadata, next) {
            metadata.set(CAPABILITIES_METADATA_KEY, capabilities);
            next(metadata);
          },
        }),
    ],
  });
  const unimplemented = { code: grpc.status.UNIMPLEMENTED, details: "not scripted" };
  server.addService(
    createGrpcServiceDefinition(Health) as unknown as grpc.ServiceDefinition,
    {
      check: (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
        callback(null, create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING })),
    } as unknown as grpc.UntypedServiceImplementation,
  );
  server.addService(
    guestServiceDefinition as unknown as grpc.ServiceDefinition,
    {
      copyFromGuest: (call: CopyFromCall) => {
        calls.push({ method: "copyFromGuest", metadata: call.metadata });
        call.on("error", () => {});
        if (!script.copyFromGuest) {
          call.emit("error", unimplemented);
          return;
        }
        Promise.resolve(script.copyFromGuest(call, tools)).catch((error: unknown) => {
          if (!call.cancelled) call.destroy(error as Error);
        });
      },
      copyToGuest: (call: CopyToCall, callback: grpc.sendUnaryData<CopyToGuestResponse>) => {
        calls.push({ method: "copyToGuest", metadata: call.metadata });
        call.on("error", () => {});
        if (!script.copyToGuest) {
          callback(unimplemented);
          return;
        }
        let answered = false;
        const answer = (response: MessageInitShape<typeof CopyToGuestResponseSchema>) => {
          if (answered) return;
          answered = true;
          callback(null, create(CopyToGuestResponseSchema, response));
        };
        Promise.resolve(script.copyToGuest(call, answer, tools)).catch((error: unknown) => {
          if (!answered) {
            answered = true;
            callback({ code: grpc.status.INTERNAL, details: String(error) });
          }
        });
      },
      forwardPort: (call: ForwardCall) => {
        calls.push({ method: "forwardPort", metadata: call.metadata });
        call.on("error", () => {});
        if (!script.forwardPort) {
          call.emit("error", unimplemented);
          return;
        }
        Promise.resolve(script.forwardPort(call, tools)).catch((error: unknown) => {
          if (!call.cancelled) call.destroy(error as Error);
        });
      },
      exec: (call: ExecCall) => {
        calls.push({ method: "exec", metadata: call.metadata });
        call.on("error", () => {});
        if (!script.exec) {
          call.emit("error", unimplemented);
          return;
        }
        Promise.resolve(script.exec(call, tools)).catch((error: unknown) => {
          if (!call.cancelled) call.destroy(error as Error);
        });
      },
      statPath: (
        call: grpc.ServerUnaryCall<StatPathRequest, StatPathResponse>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        calls.push({ method: "statPath", metadata: call.metadata });
        if (!script.statPath) callback(unimplemented);
        else callback(null, create(StatPathResponseSchema, script.statPath(call.request)));
      },
    } as unknown as grpc.UntypedServiceImplementation,
  );
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${innerPath}`, grpc.ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolve(),
    ),
  );

  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.once("close", () => sockets.delete(socket));
  };

  const outer: Server = createServer((socket) => {
    track(socket);
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      if (head[0] !== DATA_CONNECTION_MAGIC[0]) {
        // HTTP/2: to the inner grpc-js server, both ways.
        socket.off("data", onData);
        socket.pause();
        const inner = createConnection(innerPath);
        track(inner);
        inner.write(head);
        socket.pipe(inner);
        inner.pipe(socket);
        inner.once("close", () => socket.destroy());
        socket.once("close", () => inner.destroy());
        socket.resume();
        return;
      }
      if (head.length < PREAMBLE_BYTES) return;
      socket.off("data", onData);
      socket.pause();
      dataConnections += 1;
      const ticket = head.subarray(DATA_CONNECTION_MAGIC.length, PREAMBLE_BYTES).toString("hex");
      presented.push(ticket);
      const rest = head.subarray(PREAMBLE_BYTES);
      if (rest.length > 0) socket.unshift(rest);
      const deliver = waiting.get(ticket);
      waiting.delete(ticket);
      if (!DATA_CONNECTION_MAGIC.equals(head.subarray(0, DATA_CONNECTION_MAGIC.length)) || !deliver) {
        socket.destroy();
        return;
      }
      deliver(socket);
    };
    socket.on("data", onData);
  });
  await new Promise<void>((resolve, reject) => {
    outer.once("error", reject);
    outer.listen(socketPath, () => resolve());
  });

  return {
    socketPath,
    calls,
    presented,
    get dataConnections() {
      return dataConnections;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => outer.close(() => resolve()));
      server.forceShutdown();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** `message` as one frame: a 4-byte big-endian length, then the message. */
export function frame<Desc extends DescMessage>(schema: Desc, message: MessageInitShape<Desc>): Buffer {
  const bytes = toBinary(schema, create(schema, message));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.byteLength);
  return Buffer.concat([length, bytes]);
}

/** A CopyFromGuestResponse as one frame. */
export function fromFrame(message: MessageInitShape<typeof CopyFromGuestResponseSchema>): Buffer {
  return frame(CopyFromGuestResponseSchema, message);
}

/** The frame that ends a stream. */
export const END_FRAME = Buffer.alloc(4);

/** Writes `bytes` with backpressure; false once the socket is gone. */
export async function writeRaw(socket: Socket, bytes: Uint8Array): Promise<boolean> {
  if (socket.destroyed || socket.writableEnded) return false;
  if (socket.write(bytes)) return true;
  return new Promise<boolean>((resolve) => {
    const settle = (ok: boolean) => {
      socket.off("drain", onDrain);
      socket.off("close", onClose);
      resolve(ok);
    };
    const onDrain = () => settle(true);
    const onClose = () => settle(false);
    socket.on("drain", onDrain);
    socket.on("close", onClose);
  });
}

/** Writes `message` on a server stream with backpressure; false once the host has gone. */
export function sendInBand(call: CopyFromCall, message: MessageInitShape<typeof CopyFromGuestResponseSchema>) {
  return sendWhenWritable(call, create(CopyFromGuestResponseSchema, message));
}
