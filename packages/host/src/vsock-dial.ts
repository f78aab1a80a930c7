// Dialing kernel vsock (QEMU's vhost-vsock: the guest is a CID on this machine). The
// native @guestkit/vsock package is an optional dependency: without it a vsock target
// is a clear error, and every other target kind still works.
import type { Socket } from "node:net";

/** Options of dialVsock. */
export interface VsockDialOptions {
  /** Give up after this long (the error's code is ETIMEDOUT). */
  timeoutMs: number;
  /** Aborting rejects with the signal's reason and closes the half-made connection. */
  signal?: AbortSignal;
}

/**
 * Connects to (cid, port) over AF_VSOCK and resolves with a stream socket. Failures
 * reject with an Error whose `code` is the errno name (ECONNRESET: nothing listens on
 * that port; ENODEV: no such CID; ETIMEDOUT) or EVSOCKUNAVAILABLE.
 */
export async function dialVsock(cid: number, port: number, options: VsockDialOptions): Promise<Socket> {
  let vsock: typeof import("@guestkit/vsock");
  try {
    vsock = await import("@guestkit/vsock");
  } catch {
    throw new Error(
      `vsock:${cid}:${port}: kernel vsock is not available in this build (the native vsock package is not installed)`,
    );
  }
  return vsock.connectVsock(cid, port, {
    timeoutMs: options.timeoutMs,
    ...(options.signal ? { signal: options.signal } : {}),
  });
}
