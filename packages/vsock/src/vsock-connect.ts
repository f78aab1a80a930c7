// Connecting over AF_VSOCK with a timeout, without blocking the event loop: the
// connect is non-blocking and the addon watches the fd on the loop until it is done.
import type { Socket } from "node:net";
import { loadNative } from "./native-binding.js";
import { socketFromFd } from "./pipe-handle.js";
import { checkCid, checkPort, unavailableError } from "./vsock-address.js";
import { errnoError, VsockError } from "./vsock-error.js";

/** Options of connectVsock. */
export interface VsockConnectOptions {
  /** Give up (ETIMEDOUT) after this long; default 5000, as existing hosts dial. */
  timeoutMs?: number;
  /** Aborting rejects with the signal's reason and closes the half-made connection. */
  signal?: AbortSignal;
}

/**
 * Connects to (cid, port) and resolves with a connected net.Socket. Bad arguments,
 * a missing addon, a refused or timed-out connect all reject with a clear error.
 */
export async function connectVsock(cid: number, port: number, options: VsockConnectOptions = {}): Promise<Socket> {
  checkCid(cid);
  checkPort(port, "connect");
  if (port === 0xffffffff) throw new RangeError("vsock connect: port 4294967295 (VMADDR_PORT_ANY) is not a target");
  const timeoutMs = options.timeoutMs ?? 5000;
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new RangeError(`vsock connect: timeoutMs must be a positive number, got ${timeoutMs}`);
  }
  const what = `vsock connect to ${cid}:${port}`;
  return new Promise<Socket>((resolve, reject) => {
    const { signal } = options;
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const loaded = loadNative();
    if (!("native" in loaded)) {
      reject(unavailableError(loaded.reason, "connect"));
      return;
    }
    const { native } = loaded;
    const started = native.connectStart(cid, port);
    if (typeof started === "number") {
      reject(errnoError(started, "connect", what));
      return;
    }
    const [fd, inProgress] = started;
    const connected = () => {
      const socket = socketFromFd(fd);
      if (typeof socket === "number") {
        native.closeFd(fd);
        reject(errnoError(socket, "connect", what));
      } else {
        resolve(socket);
      }
    };
    if (!inProgress) {
      connected();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    const request = native.waitConnected(fd, (result) => {
      cleanup();
      if (result === 0) {
        connected();
      } else {
        native.closeFd(fd);
        reject(errnoError(result, "connect", what));
      }
    });
    if (typeof request === "number") {
      native.closeFd(fd);
      reject(errnoError(request, "connect", what));
      return;
    }
    const cancel = (error: unknown) => {
      cleanup();
      native.cancelConnect(request);
      native.closeFd(fd);
      reject(error);
    };
    const onAbort = () => cancel(signal?.reason);
    timer = setTimeout(
      () =>
        cancel(new VsockError(`${what}: timed out after ${timeoutMs} ms`, { code: "ETIMEDOUT", syscall: "connect" })),
      timeoutMs,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
