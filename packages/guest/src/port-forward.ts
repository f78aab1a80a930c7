// ForwardPort: one TCP connection from inside the guest, relayed over one gRPC stream
// (framing in proto/guest/guest.proto). The agent connects to host:port as seen from
// inside the guest, then copies bytes both ways with backpressure on each side: the
// socket is paused while the call cannot take more, and the call is paused while the
// socket cannot. Each direction's end is passed on as a half-close; the call ends when
// both directions have ended. A cancelled call (the host side went away) resets the
// socket, so nothing stays open in the agent.
import { lookup } from "node:dns/promises";
import { isIP, Socket } from "node:net";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  errorCodeOf,
  type ForwardPortRequest,
  type ForwardPortResponse,
  ForwardPortResponseSchema,
  type GuestServiceHandlers,
} from "@guestkit/protocol";
import { grpcError } from "./transport/grpc-errors.js";

type ForwardCall = grpc.ServerDuplexStream<ForwardPortRequest, ForwardPortResponse>;

// A connect that neither succeeds nor fails (a filtered port) gives up after this long.
const CONNECT_TIMEOUT_MS = 10_000;

/** The TCP ports the agent itself listens on: a forward must not reach the agent. */
export interface OwnListeners {
  tcpPorts(): ReadonlySet<number>;
}

/** The ForwardPort handler. */
export function createForwardPortHandler(own: OwnListeners): GuestServiceHandlers["forwardPort"] {
  return (call) => {
    call.once("data", (first: ForwardPortRequest) => {
      // Nothing more is read until the connection is up: what the host sends in the
      // meantime waits in the call's flow control.
      call.pause();
      if (first.request.case !== "start") {
        call.emit("error", grpcError(grpc.status.INVALID_ARGUMENT, "the first ForwardPort message must be start"));
        return;
      }
      void relay(call, first.request.value.host || "127.0.0.1", first.request.value.port, own);
    });
    call.on("error", () => {});
  };
}

async function relay(call: ForwardCall, host: string, port: number, own: OwnListeners): Promise<void> {
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
  pump(call, socket, `${address}:${port}`);
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
