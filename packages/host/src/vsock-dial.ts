// Dialing kernel vsock (QEMU's vhost-vsock) needs the native vsock package. Until it is
// installed, a vsock target is a clear error.
import type { Socket } from "node:net";

export interface VsockDialOptions {
  /** Give up after this long. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Connects to (cid, port) over AF_VSOCK and resolves with a stream socket. */
export async function dialVsock(cid: number, port: number, _options: VsockDialOptions): Promise<Socket> {
  throw new Error(
    `vsock:${cid}:${port}: kernel vsock is not available in this build (the native vsock package is not installed)`,
  );
}
