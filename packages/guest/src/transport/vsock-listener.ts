// Serving gRPC on AF_VSOCK. grpc-js cannot bind vsock itself, so the native
// @guestkit/vsock package accepts the connections (as ordinary net.Socket streams) and
// each one is injected into the same grpc-js server the Unix and TCP listeners feed.
// The package is an optional dependency: without it (or without a built addon) asking
// for vsock is a clear error and every other listener still works.
//
// Who may connect: a vsock port has no owner and no permission bits, and every process in
// the guest can reach it through the loopback transport (CID 1) or the guest's own CID. An
// agent that runs commands as root must not be a root shell for every local user, so
// without a token only the VMM's host side (VMADDR_CID_HOST, 2: what Cloud Hypervisor,
// Firecracker and QEMU give host-initiated connections) is served; anyone else is
// closed at once and logged. With a token every peer is served and every call must
// carry it (token-auth.ts), which is how a test inside the guest, or a sibling VM, reaches it.
import * as grpc from "@grpc/grpc-js";
import { logError } from "../log.js";
import { importOptional } from "../optional-package.js";

type VsockModule = typeof import("@guestkit/vsock");

const FALLBACK_HINT = "use --listen unix:PATH (or tcp:127.0.0.1:PORT with --token-file)";

/** Listens on vsock `port` and hands each allowed connection to the server; returns a closer. */
export async function listenVsock(
  server: grpc.Server,
  port: number,
  options: { tokenRequired: boolean },
): Promise<() => void> {
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
  listener.on("connection", (socket, peerCid) => {
    if (options.tokenRequired || peerCid === vsock.VMADDR_CID_HOST) {
      injector.injectConnection(socket);
      return;
    }
    socket.destroy();
    logError(
      `vsock:${port}: refused a connection from CID ${peerCid}: without --token-file only the host (CID ${vsock.VMADDR_CID_HOST}) may connect`,
    );
  });
  // An accept failure (EMFILE under load) loses that one connection; the listener stays.
  listener.on("error", (error) => logError(error.message));
  return () => {
    listener.close();
    injector.destroy();
  };
}
