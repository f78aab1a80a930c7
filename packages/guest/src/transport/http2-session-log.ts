// grpc-js does not listen for errors on the HTTP/2 sessions of its servers: a connection
// that Node or nghttp2 tears down (a protocol error, a limit it enforces) would vanish
// without a word in the agent's log, and only the host would see "Session closed with
// error code 2". One line names the reason on the agent's side.
import type * as grpc from "@grpc/grpc-js";
import { logError } from "../log.js";
import { hookHttp2Servers } from "./http2-server-hook.js";

/** Logs every HTTP/2 session error of the http2 servers `server` creates from now on. */
export function logHttp2SessionErrors(server: grpc.Server): boolean {
  return hookHttp2Servers(server, {
    purpose: "logging of HTTP/2 connection errors",
    created(http2Server) {
      http2Server.on("sessionError", (error: Error & { code?: string }) => {
        // A peer that went away (a readiness probe that connects and hangs up, a host
        // that was killed) is routine, not a failure of the connection.
        if (error.code === "ECONNRESET" || error.code === "EPIPE") return;
        logError(`an HTTP/2 connection failed: ${error.message}${error.code ? ` (${error.code})` : ""}`);
      });
    },
  });
}
