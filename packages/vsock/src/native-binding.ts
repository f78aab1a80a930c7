// The one loader of the native addon. Whether vsock works is decided here, once, and a
// caller that needs it gets one clear sentence saying why it does not.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";

/** The addon's functions (native/vsock.c). Each returns a negative errno on failure. */
export interface VsockNative {
  /** Creates, binds (VMADDR_CID_ANY) and listens; returns the fd. */
  listen(port: number, backlog: number): number;
  /** The port a bound socket has. */
  localPort(fd: number): number;
  /** Starts a non-blocking connect; returns [fd, inProgress]. */
  connectStart(cid: number, port: number): [number, boolean] | number;
  /** Calls back once with 0 (connected) or -errno; returns a request for cancelConnect. */
  waitConnected(fd: number, callback: (result: number) => void): object | number;
  /** Stops waiting; the callback will not run. */
  cancelConnect(request: object): number;
  closeFd(fd: number): number;
  /** This machine's CID, read from /dev/vsock. */
  localCid(): number;
  /** The CID of a connected socket's peer (getpeername). */
  peerCid(fd: number): number;
}

const ADDON_PATH = "../build/Release/vsock.node";

let loaded: { native: VsockNative } | { reason: string } | undefined;

/** The addon, or the reason it cannot be used on this system. */
export function loadNative(): { native: VsockNative } | { reason: string } {
  loaded ??= load();
  return loaded;
}

function load(): { native: VsockNative } | { reason: string } {
  if (process.platform !== "linux") return { reason: `AF_VSOCK is Linux only (this is ${process.platform})` };
  const require = createRequire(import.meta.url);
  const reasonFile = new URL("../build/unavailable.txt", import.meta.url);
  if (!existsSync(new URL(ADDON_PATH, import.meta.url))) {
    const why = existsSync(reasonFile) ? readFileSync(reasonFile, "utf8").trim() : "it was never built";
    return {
      reason: `the @guestkit/vsock native addon is not built (${why}); reinstall with a C compiler, make and python3`,
    };
  }
  try {
    return { native: require(ADDON_PATH) as VsockNative };
  } catch (error) {
    return { reason: `the @guestkit/vsock native addon failed to load: ${(error as Error).message}` };
  }
}
