// Lets the agent's host reset as many HTTP/2 streams as it needs to.
//
// nghttp2, under Node's http2, guards servers against the "rapid reset" attack
// (CVE-2023-44487): once a client has reset more than 1000 streams in a burst, refilled
// at 33 a second, the server closes the whole connection with GOAWAY INTERNAL_ERROR, and
// every call on it fails with "Session closed with error code 2". A host resets streams
// in normal work: grpc-js sends RST_STREAM(CANCEL) for every call the host cancels before
// the agent's trailers have arrived, and the host cancels each copy-from as soon as its
// final `end` message is in, which on a busy machine is usually before the trailers.
// Twenty workers round-tripping small files on one connection (tests/reliability/
// concurrent-copies.test.ts) make over a hundred such resets a second: the connection
// went down after about 2,660 round trips, i.e. 1,330 resets in ten seconds.
//
// The guard protects a public server from strangers. The agent's only clients are its
// host, which may run any command as root anyway, so the guard bought nothing there and
// turned a busy host's ordinary traffic into a failed connection: the limits are set to
// the largest values Node accepts, which no real host reaches.
import type * as grpc from "@grpc/grpc-js";
import { hookHttp2Servers } from "./http2-server-hook.js";

// Node keeps these options in a Uint32Array.
const UNLIMITED = 0xffff_ffff;

/**
 * Lifts nghttp2's limit on the rate of stream resets a client may send, on every
 * http2 server `server` creates from now on. Call it before the first bind or
 * connection injector. Returns false (and logs) when grpc-js no longer has the hook.
 */
export function allowStreamResets(server: grpc.Server): boolean {
  return hookHttp2Servers(server, {
    purpose: "the lifted stream-reset limit (a host that cancels many calls may lose its connection)",
    options: { streamResetBurst: UNLIMITED, streamResetRate: UNLIMITED },
  });
}
