// ForwardPort: one TCP connection from inside the guest, relayed over one gRPC stream
// (framing in proto/guest/guest.proto). The agent connects to host:port as seen from
// inside the guest, then copies bytes both ways with backpressure on each side: the
// socket is paused while the call cannot take more, and the call is paused while the
// socket cannot. Each direction's end is passed on as a half-close; the call ends when
// both directions have ended. A cancelled call (the host side went away) resets the
// socket, so nothing stays open in the agent.
//
// A client that asks gets a data connection (guest.proto, "Data connections") once the
// TCP connection is up: the ticket in the response headers, `connected` only after the
// data connection came, and then the bytes as ForwardPortRequest / ForwardPortResponse
// `data` frames on it, each direction ending with its end frame (never a half-close of
// the data connection, which a VMM would take for the end of both directions).
import { lookup } from "node:dns/promises";
import { isIP, Socket } from "node:net";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  errorCodeOf,
  type ForwardPortRequest,
  ForwardPortRequestSchema,
  type ForwardPortResponse,
  ForwardPortResponseSchema,
  FrameWriter,
  type GuestServiceHandlers,
  readFrames,
} from "@guestkit/protocol";
import { asksForDataConnection, type DataConnections, type DataTicket } from "./transport/data-connections.js";
import { grpcError } from "./transport/grpc-errors.js";

type ForwardCall = grpc.ServerDuplexStream<ForwardPortRequest, ForwardPortResponse>;

// A connect that neither succeeds nor fails (a filtered port) gives up after this long.
const CONNECT_TIMEOUT_MS = 10_000;

/** The TCP ports the agent itself listens on: a forward must not reach the agent. */
export interface OwnListeners {
  tcpPorts(): ReadonlySet<number>;
}

/** The ForwardPort handler; a client that asks gets its bytes on a data connection from `data`. */
export function createForwardPortHandler(
  own: OwnListeners,
  data: DataConnections,
): GuestServiceHandlers["forwardPort"] {
  return (call) => {
    call.once("data", (first: ForwardPortRequest) => {
      // Nothing more is read until the connection is up: what the host sends in the
      // meantime waits in the call's flow control.
      call.pause();
      if (first.request.case !== "start") {
        call.emit("error", grpcError(grpc.status.INVALID_ARGUMENT, "the first ForwardPort message must be start"));
        return;
      }
      const offer = asksForDataConnection(call) ? data : undefined;
      void relay(call, first.request.value.host || "127.0.0.1", first.request.value.port, own, offer);
    });
    call.on("error", () => {});
  };
}

async function relay(
  call: ForwardCall,
  host: string,
  port: number,
  own: OwnListeners,
  data: DataConnections | undefined,
): Promise<void> {
  const refuse = (code: string, message: string) => {
    call.write(create(ForwardPortResponseSchema, { response: { case: "connectError", value: { code, message } } }));
    call.end();
  };
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    refuse("EINVAL", `bad port ${port}: a TCP port is 1-65535`);
    return;
  }
  let address: string;
  try {
    address = isIP(host) ? host : (await lookup(host)).address;
  } catch (error) {
    refuse("ENOTFOUND", `cannot resolve ${host}: ${(error as Error).message}`);
    return;
  }
  if (own.tcpPorts().has(port) && isThisMachine(address)) {
    refuse("EACCES", `${host}:${port} is the agent's own listener, which cannot be reached through a forward`);
    return;
  }
  if (call.cancelled) return;
  // Each direction ends on its own: Node must not end ours when the peer ends its.
  const socket = new Socket({ allowHalfOpen: true });
  const connected = await new Promise<Error | undefined>((resolve) => {
    const timer = setTimeout(() => {
      const error = Object.assign(new Error("connect timed out"), { code: "ETIMEDOUT" });
      socket.destroy();
      resolve(error);
    }, CONNECT_TIMEOUT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      resolve(error);
    });
    socket.connect({ host: address, port });
  });
  if (connected) {
    const code = errorCodeOf(connected);
    refuse(code, `connect to ${host}:${port}: ${connected.message}`);
    return;
  }
  if (call.cancelled) {
    socket.destroy();
    return;
  }
  if (!data) {
    pump(call, socket, `${address}:${port}`);
    return;
  }
  const offered = data.offer(call);
  let dataSocket: Socket;
  try {
    dataSocket = await offered.connection;
  } catch (error) {
    socket.destroy();
    offered.withdraw();
    if (!call.cancelled) {
      call.emit("error", grpcError(grpc.status.UNAVAILABLE, `ForwardPort: ${(error as Error).message}`));
    }
    return;
  }
  pumpFrames(call, socket, dataSocket, offered, `${address}:${port}`);
}

// The same relay as pump(), with the bytes on a data connection; the call carries only
// `connected` and the end (or the failure).
function pumpFrames(call: ForwardCall, socket: Socket, dataSocket: Socket, offered: DataTicket, address: string): void {
  let hostDone = false;
  let guestDone = false;
  let finished = false;
  const frames = new FrameWriter(dataSocket, ForwardPortResponseSchema);
  const fail = (why: string) => {
    if (finished) return;
    finished = true;
    socket.destroy();
    offered.withdraw();
    if (!call.cancelled) call.emit("error", grpcError(grpc.status.UNAVAILABLE, why));
  };
  const maybeEnd = () => {
    if (!hostDone || !guestDone || finished) return;
    finished = true;
    socket.end();
    call.end();
    offered.withdraw();
  };
  call.on("cancelled", () => {
    if (finished) return;
    finished = true;
    socket.destroy();
    offered.withdraw();
  });
  socket.on("error", () => fail(`the connection to ${address} failed`));
  dataSocket.once("close", () => {
    if (!(hostDone && guestDone)) fail("ForwardPort: the data connection was lost");
  });

  call.write(create(ForwardPortResponseSchema, { response: { case: "connected", value: { address } } }));

  // Guest side -> host.
  socket.on("data", (bytes: Buffer) => {
    if (finished) return;
    try {
      if (!frames.writeNow(create(ForwardPortResponseSchema, { response: { case: "data", value: bytes } }))) {
        socket.pause();
        dataSocket.once("drain", () => socket.resume());
      }
    } catch {
      // The data connection is closed: its close listener reports it.
    }
  });
  socket.on("end", () => {
    if (finished) return;
    frames.end().then(
      () => {
        guestDone = true;
        maybeEnd();
      },
      () => fail("ForwardPort: the data connection was lost"),
    );
  });

  // Host -> guest side.
  void (async () => {
    try {
      for await (const request of readFrames(dataSocket, ForwardPortRequestSchema)) {
        if (finished) return;
        if (request.request.case !== "data") continue;
        if (!socket.write(request.request.value)) {
          await new Promise((resolve) => {
            socket.once("drain", resolve);
            socket.once("close", resolve);
          });
        }
      }
    } catch {
      fail("ForwardPort: the data connection was lost");
      return;
    }
    if (finished) return;
    hostDone = true;
    socket.end();
    maybeEnd();
  })();
}

function pump(call: ForwardCall, socket: Socket, address: string): void {
  let hostDone = false;
  let guestDone = false;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    socket.destroy();
  };
  const maybeEnd = () => {
    if (hostDone && guestDone && !finished) {
      finished = true;
      call.end();
      socket.end();
    }
  };
  // The host went away or cancelled: reset the connection, nothing left open.
  call.on("cancelled", finish);
  call.on("close", () => {
    if (!(hostDone && guestDone)) finish();
  });
  socket.on("error", () => {
    // The guest-side peer reset the connection: the call ends; the host sees the status.
    if (finished) return;
    finished = true;
    call.emit("error", grpcError(grpc.status.UNAVAILABLE, `the connection to ${address} failed`));
  });

  call.write(create(ForwardPortResponseSchema, { response: { case: "connected", value: { address } } }));

  // Guest side -> host.
  socket.on("data", (data: Buffer) => {
    if (finished) return;
    const more = call.write(create(ForwardPortResponseSchema, { response: { case: "data", value: data } }));
    if (!more) {
      socket.pause();
      call.once("drain", () => socket.resume());
    }
  });
  socket.on("end", () => {
    if (finished) return;
    call.write(create(ForwardPortResponseSchema, { response: { case: "eof", value: {} } }));
    guestDone = true;
    maybeEnd();
  });

  // Host -> guest side.
  call.on("data", (request: ForwardPortRequest) => {
    if (finished) return;
    const message = request.request;
    if (message.case === "data") {
      if (!socket.write(message.value)) {
        call.pause();
        socket.once("drain", () => call.resume());
      }
    } else if (message.case === "eof") {
      hostDone = true;
      socket.end();
      maybeEnd();
    }
  });
  call.on("end", () => {
    // A half-close without `eof` means the same.
    if (!hostDone) {
      hostDone = true;
      socket.end();
      maybeEnd();
    }
  });
  call.resume();
}

// Addresses that reach the agent's own listeners (which bind loopback or all addresses).
function isThisMachine(address: string): boolean {
  const v4 = address.startsWith("::ffff:") ? address.slice(7) : address;
  return v4.startsWith("127.") || v4 === "0.0.0.0" || address === "::1" || address === "::";
}
