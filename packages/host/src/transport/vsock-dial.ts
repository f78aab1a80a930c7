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
  } catch (error) {
    // The caller puts the target in front of this message.
    throw new Error(`kernel vsock needs the optional @guestkit/vsock package: ${whyNotLoaded(error)}`, {
      cause: error,
    });
  }
  return vsock.connectVsock(cid, port, {
    timeoutMs: options.timeoutMs,
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

// A package that is absent, or one that is there but broken (a file missing inside it,
// an export this Node lacks): the text says which, so nobody reinstalls what is there.
function whyNotLoaded(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (code === "ERR_MODULE_NOT_FOUND" && String(message).includes("'@guestkit/vsock'")) {
    return "it is not installed (npm install @guestkit/vsock; it builds with node-gyp)";
  }
  return `it failed to load: ${String(message)}`;
}
