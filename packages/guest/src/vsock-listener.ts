// Serving gRPC on AF_VSOCK. grpc-js cannot bind vsock itself, so the native
// @guestkit/vsock package accepts the connections (as ordinary net.Socket streams) and
// each one is injected into the same grpc-js server the Unix and TCP listeners feed.
// The package is an optional dependency: without it (or without a built addon) asking
// for vsock is a clear error and every other listener still works.
import * as grpc from "@grpc/grpc-js";
import { logError } from "./log.js";
import { importOptional } from "./optional-package.js";

type VsockModule = typeof import("@guestkit/vsock");

const FALLBACK_HINT = "use --listen unix:PATH (or tcp:127.0.0.1:PORT with --token-file)";

/** Listens on vsock `port` and hands each connection to the server; returns a closer. */
export async function listenVsock(server: grpc.Server, port: number): Promise<() => void> {
  const loaded = await importOptional("@guestkit/vsock", () => import("@guestkit/vsock"));
  if (!("module" in loaded))
    throw new Error(`vsock:${port}: cannot listen on vsock: ${loaded.reason}; ${FALLBACK_HINT}`);
  const vsock = loaded.module;
  let listener: ReturnType<VsockModule["listenVsock"]>;
  try {
    listener = vsock.listenVsock(port);
  } catch (error) {
    const message = (error as Error).message;
    throw new Error(
      (error as { code?: unknown }).code === "EVSOCKUNAVAILABLE"
        ? `vsock:${port}: ${message}; ${FALLBACK_HINT}`
        : message,
    );
  }
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  listener.on("connection", (socket) => injector.injectConnection(socket));
  // An accept failure (EMFILE under load) loses that one connection; the listener stays.
  listener.on("error", (error) => logError(error.message));
  return () => {
    listener.close();
    injector.destroy();
  };
}
