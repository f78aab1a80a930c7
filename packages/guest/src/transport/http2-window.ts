// Widens the HTTP/2 flow-control windows the agent grants its clients.
//
// grpc-js has a client option for this (`grpc-node.flow_control_window`) but none for
// the server: every session would advertise HTTP/2's default 64 KiB window, and an
// upload could then put only 64 KiB on the wire before waiting a round trip through
// both event loops for a WINDOW_UPDATE. The stream window is an HTTP/2 SETTING and the
// connection window a WINDOW_UPDATE on each new session, both set on the http2 servers
// grpc-js creates (http2-server-hook.ts).
import type * as grpc from "@grpc/grpc-js";
import { hookHttp2Servers } from "./http2-server-hook.js";

/**
 * Makes every HTTP/2 session that `server` creates from now on grant `windowBytes` of
 * flow-control window, per stream and for the whole connection. Call it before the
 * first bind or connection injector. Returns false (and logs) when grpc-js no longer
 * has the hook, in which case the defaults stay.
 */
export function widenHttp2Windows(server: grpc.Server, windowBytes: number): boolean {
  return hookHttp2Servers(server, {
    purpose: "the wide HTTP/2 window (uploads will be slower)",
    created(http2Server) {
      http2Server.updateSettings({ initialWindowSize: windowBytes });
      http2Server.on("session", (session) => {
        // The session can die before the handshake finishes (a client that connects and
        // leaves); a window we cannot set is then of no use to anyone.
        try {
          session.setLocalWindowSize(windowBytes);
        } catch {}
      });
    },
  });
}
