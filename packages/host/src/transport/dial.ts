// The one dialer: every target kind becomes a raw byte stream to the agent here.
//
// It is the reference for what reaching an agent means: `guestctl proxy`, the vsock
// bridge under the gRPC connection (dial-bridge.ts) and the tests use it as it is, and
// its errors (real Node errno values, not strings grpc-js made out of them) are the
// ones the library reports. For unix, tcp and hvsock targets the gRPC connection lets
// grpc-js open the socket itself, to save a copy and a hop (see guest-connection.ts),
// but it runs the same hybridVsockHandshake and asks dial() why when a connect failed.
import { connect, type Socket } from "node:net";
import { errnoOf } from "@guestkit/protocol";
import { Code, cancelledError, connectErrorFromErrno, GuestError } from "../guest-error.js";
import { hybridVsockHandshake } from "./hybrid-vsock-handshake.js";
import { formatTarget, type GuestTarget } from "./target.js";
import { dialVsock } from "./vsock-dial.js";

/** Default time to get a connected socket (existing hosts use 5 s). */
export const DEFAULT_DIAL_TIMEOUT_MS = 5000;
/** Default time for the VMM to answer CONNECT (existing hosts use 5 s). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;

/** Options of dial(). */
export interface DialOptions {
  /** Time to get a connected socket. Default 5 s. */
  dialTimeoutMs?: number;
  /** hvsock only: time for the VMM to answer CONNECT. Default 5 s. */
  handshakeTimeoutMs?: number;
  /** Aborting destroys whatever is half set up and rejects with CANCELLED. */
  signal?: AbortSignal;
}

/**
 * Connects to the agent and resolves with a socket that carries the agent's bytes and
 * nothing else (for hvsock: after the OK line, with bytes that came with it kept). The
 * socket is paused; the caller reads or pipes it. Rejects with a GuestError whose
 * `reason` says why the agent could not be reached.
 */
export async function dial(target: GuestTarget, options: DialOptions = {}): Promise<Socket> {
  const context = formatTarget(target);
  const dialTimeoutMs = options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
  if (options.signal?.aborted) throw cancelledError(options.signal, context);
  switch (target.kind) {
    case "unix":
      return connectSocket({ path: target.path }, dialTimeoutMs, options.signal, context);
    case "tcp":
      return connectSocket({ host: target.host, port: target.port }, dialTimeoutMs, options.signal, context);
    case "hvsock": {
      const socket = await connectSocket({ path: target.path }, dialTimeoutMs, options.signal, context);
      await hybridVsockHandshake(socket, target.port, {
        timeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
        context,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return socket;
    }
    case "vsock":
      try {
        const socket = await dialVsock(target.cid, target.port, {
          timeoutMs: dialTimeoutMs,
          ...(options.signal ? { signal: options.signal } : {}),
        });
        socket.pause();
        return socket;
      } catch (error) {
        if (options.signal?.aborted) throw cancelledError(options.signal, context);
        // Kernel vsock answers a port nobody listens on with a reset: the same "no
        // listener" as the hybrid-vsock close, and just as worth retrying while booting.
        if (errnoOf(error) === "ECONNRESET") {
          throw new GuestError(Code.UNAVAILABLE, `no agent listening on port ${target.port}`, {
            reason: "no-listener",
            cause: error,
            context,
          });
        }
        throw connectErrorFromErrno(error, context);
      }
  }
}

function connectSocket(
  address: { path: string } | { host: string; port: number },
  timeoutMs: number,
  signal: AbortSignal | undefined,
  context: string,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(address);
    const done = (error?: GuestError) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("connect", onConnect);
      socket.off("error", onError);
      if (error) {
        // A late error on a socket we gave up on must not crash the process.
        socket.on("error", () => {});
        socket.destroy();
        reject(error);
      } else {
        socket.pause();
        resolve(socket);
      }
    };
    const onConnect = () => {
      if ("host" in address) socket.setNoDelay(true);
      done();
    };
    const onError = (error: Error) => done(connectErrorFromErrno(error, context));
    const onAbort = () => done(cancelledError(signal, context));
    const timer = setTimeout(
      () =>
        done(
          new GuestError(Code.UNAVAILABLE, `could not connect within ${timeoutMs} ms`, {
            reason: "dial-timeout",
            context,
          }),
        ),
      timeoutMs,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", onConnect);
    socket.once("error", onError);
  });
}
