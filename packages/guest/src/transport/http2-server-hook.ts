// The one place that reaches into grpc-js's server internals to shape the node:http2
// servers it creates.
//
// grpc-js exposes only a few of Node's HTTP/2 server options (max session memory, max
// concurrent streams) and no way to act on a server or session it creates. It builds
// every http2 server (Unix, TCP and the vsock connection injector alike) in one private
// method, `createHttp2Server`, from the options in a private field,
// `commonServerOptions`; wrapping the one and extending the other on this instance
// reaches them all. That is internal API, so grpc-js is pinned to a minor version, the
// tests check the effects on the wire (http2-window.test.ts, stream-resets.test.ts),
// and if either member ever disappears the agent still serves, with Node's defaults,
// and says so once.
import type * as http2 from "node:http2";
import type * as grpc from "@grpc/grpc-js";
import { logError } from "../log.js";

type Http2ServerFactory = (credentials: grpc.ServerCredentials) => http2.Http2Server;

interface ServerInternals {
  createHttp2Server?: Http2ServerFactory;
  commonServerOptions?: http2.ServerOptions;
}

/** What to change in each http2 server grpc-js creates. */
export interface Http2ServerHook {
  /** Why the hook is there, for the one line logged if grpc-js no longer has it. */
  purpose: string;
  /** node:http2 server options added to grpc-js's own (ours win). */
  options?: http2.ServerOptions;
  /** Runs on each http2 server as soon as grpc-js has created it, before it accepts anything. */
  created?: (http2Server: http2.Http2Server) => void;
}

/**
 * Applies `hook` to every http2 server that `server` creates from now on: call it before
 * the first bind or connection injector. Returns false (and logs) when grpc-js no longer
 * has the members it relies on; nothing is changed then.
 */
export function hookHttp2Servers(server: grpc.Server, hook: Http2ServerHook): boolean {
  const internals = server as unknown as ServerInternals;
  const create = internals.createHttp2Server;
  const common = internals.commonServerOptions;
  if (typeof create !== "function" || typeof common !== "object" || common === null) {
    logError(`grpc-js has no createHttp2Server or commonServerOptions: ${hook.purpose} is not applied`);
    return false;
  }
  if (hook.options) internals.commonServerOptions = { ...common, ...hook.options };
  const created = hook.created;
  if (created) {
    internals.createHttp2Server = function (this: grpc.Server, credentials) {
      const http2Server = create.call(this, credentials);
      created(http2Server);
      return http2Server;
    };
  }
  return true;
}
