// Bearer-token check for every call, required when the agent listens on TCP: a TCP port,
// loopback included, has no owner, so anyone who can reach it (any local user) could
// otherwise connect.
import { createHash, timingSafeEqual } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { formatListenAddress, type ListenAddress } from "./listen-address.js";

/** Metadata key clients put the token in, as `authorization: Bearer TOKEN`. */
export const AUTH_METADATA_KEY = "authorization";

/**
 * Throws unless the agent may listen on `address` with or without a token. Loopback TCP
 * is no private channel: any local user can connect to it (a command the agent itself
 * runs as nobody, say), and unlike a Unix socket it has no owner to check. So every TCP
 * listener needs the token; unix and vsock listeners do not.
 */
export function checkTokenFor(address: ListenAddress, token: string | undefined): void {
  if (address.kind === "tcp" && !token) {
    throw new Error(
      `refusing to listen on ${formatListenAddress(address)} without a token: anyone who can connect to it, any local user included, could run commands as root (use --token-file, or a unix: or vsock: address)`,
    );
  }
}

/** A server interceptor that refuses calls without `authorization: Bearer <token>`. */
export function createTokenInterceptor(token: string): grpc.ServerInterceptor {
  const expected = digest(token);
  return (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, forward) {
            const header = metadata.get(AUTH_METADATA_KEY)[0];
            const presented = typeof header === "string" ? header.replace(/^Bearer\s+/i, "") : "";
            if (presented && timingSafeEqual(digest(presented), expected)) {
              forward(metadata);
            } else {
              call.sendStatus({
                code: grpc.status.UNAUTHENTICATED,
                details: "missing or wrong token (send `authorization: Bearer <token>`)",
              });
            }
          },
        });
      },
    });
}

// Comparing fixed-length digests keeps the comparison constant-time whatever the length.
function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}
