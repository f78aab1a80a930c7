// Bearer-token check for every call, required when the agent listens on a TCP address
// that other machines can reach.
import { createHash, timingSafeEqual } from "node:crypto";
import * as grpc from "@grpc/grpc-js";

/** Metadata key clients put the token in, as `authorization: Bearer TOKEN`. */
export const AUTH_METADATA_KEY = "authorization";

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
