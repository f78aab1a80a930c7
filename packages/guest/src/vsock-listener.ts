// Listening on AF_VSOCK needs the native vsock package (issue: real vsock). Until it is
// there, asking for a vsock listener is a clear error.
import type * as grpc from "@grpc/grpc-js";

/** Listens on vsock `port` and hands each connection to the server; returns a closer. */
export async function listenVsock(_server: grpc.Server, port: number): Promise<() => void> {
  throw new Error(
    `vsock:${port}: vsock listening is not available in this build (the native vsock package is not installed); use --listen unix:PATH or tcp:127.0.0.1:PORT`,
  );
}
