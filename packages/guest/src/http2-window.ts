// Widens the HTTP/2 flow-control windows the agent grants its clients.
//
// grpc-js has a client option for this (`grpc-node.flow_control_window`) but none for
// the server: every session would advertise HTTP/2's default 64 KiB window, and an
// upload could then put only 64 KiB on the wire before waiting a round trip through
// both event loops for a WINDOW_UPDATE. The stream window is an HTTP/2 SETTING and the
// connection window a WINDOW_UPDATE on each new session, and grpc-js creates every
// http2 server (Unix, TCP and the vsock connection injector alike) in one private
// method, `createHttp2Server`; wrapping that method on this instance reaches them all.
// It is internal API, so grpc-js is pinned to a minor version, the tests check the
// advertised windows, and if the method ever disappears the agent still serves, at
// the default window, and says so once.
import type * as http2 from "node:http2";
import type * as grpc from "@grpc/grpc-js";
import { logError } from "./log.js";

type Http2ServerFactory = (credentials: grpc.ServerCredentials) => http2.Http2Server;

/**
 * Makes every HTTP/2 session that `server` creates from now on grant `windowBytes` of
 * flow-control window, per stream and for the whole connection. Call it before the
 * first bind or connection injector. Returns false (and logs) when grpc-js no longer
 * has the hook, in which case the defaults stay.
 */
export function widenHttp2Windows(server: grpc.Server, windowBytes: number): boolean {
  const internals = server as unknown as { createHttp2Server?: Http2ServerFactory };
  const create = internals.createHttp2Server;
  if (typeof create !== "function") {
    logError("grpc-js has no createHttp2Server: HTTP/2 windows stay at 64 KiB, so uploads will be slower");
    return false;
  }
  internals.createHttp2Server = function (this: grpc.Server, credentials) {
    const http2Server = create.call(this, credentials);
    http2Server.updateSettings({ initialWindowSize: windowBytes });
    http2Server.on("session", (session) => {
      // The session can die before the handshake finishes (a client that connects and
      // leaves); a window we cannot set is then of no use to anyone.
      try {
        session.setLocalWindowSize(windowBytes);
      } catch {}
    });
    return http2Server;
  };
  return true;
}
