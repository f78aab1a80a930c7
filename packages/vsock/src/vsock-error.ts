// The one place errno values from the addon and from libuv become Error objects.
// getSystemErrorMap, not getSystemErrorMessage: the latter is missing from Node before
// 22.12, and a named import of it made the whole package fail to load there.
import { getSystemErrorMap } from "node:util";

/** A failed vsock operation. `code` is the errno name ("EADDRINUSE"), as Node's own errors carry. */
export class VsockError extends Error {
  /** Errno name, or "ETIMEDOUT" for a connect timeout and "EVSOCKUNAVAILABLE" when there is no vsock. */
  readonly code: string;
  /** Negative errno (libuv's convention), 0 when the error did not come from the system. */
  readonly errno: number;
  /** What was being done: "listen", "connect", "accept"... */
  readonly syscall: string;

  constructor(message: string, options: { code: string; errno?: number; syscall: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "VsockError";
    this.code = options.code;
    this.errno = options.errno ?? 0;
    this.syscall = options.syscall;
  }
}

// Hints for errors people hit in practice, where the errno alone is misleading.
const HINTS: Record<string, string> = {
  EAFNOSUPPORT: "this kernel has no AF_VSOCK support (load the vsock module and a transport)",
  ENODEV: "no vsock transport reaches that CID (no virtio-vsock device, or vsock_loopback for CID 1)",
  ECONNRESET: "nothing is listening on that port, or the peer refused the connection",
};

/** Turns a negative errno into a VsockError whose message says what was attempted. */
export function errnoError(errno: number, syscall: string, what: string): VsockError {
  const [name, message] = getSystemErrorMap().get(errno) ?? [`E${-errno}`, "system error"];
  const text = HINTS[name] ?? message;
  return new VsockError(`${what}: ${text} (${name})`, { code: name, errno, syscall });
}
