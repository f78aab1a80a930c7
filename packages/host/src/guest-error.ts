// The host library's one error class and the ONE place that turns what went wrong
// (a gRPC status, a Node errno, an abort) into it. Everything the library throws or
// rejects with is a GuestError, so callers switch on `code` (a gRPC status code) or
// the finer `reason`, and never parse message text.
import { constants } from "node:os";
import { getSystemErrorMap } from "node:util";
import { status as Code, type StatusObject } from "@grpc/grpc-js";
import { cutText, errnoOf, MAX_GUEST_MESSAGE, statusOfErrno } from "@guestkit/protocol";

export { Code };

/**
 * What happened, finer than the gRPC code. The connection-level reasons (`no-socket`
 * ... `connection-failed`) all come with code UNAVAILABLE: the agent could not be
 * reached, and `reason` says why.
 */
export type GuestErrorReason =
  /** A bad target string or option (INVALID_ARGUMENT). */
  | "invalid-argument"
  /** The socket file (Unix or hybrid vsock) does not exist. */
  | "no-socket"
  /** Nobody accepts connections on the socket or TCP port. */
  | "refused"
  /** The VMM closed the hybrid-vsock connection without `OK`: nothing listens on that guest port. */
  | "no-listener"
  /** The host or network cannot be reached, or the name does not resolve. */
  | "unreachable"
  /** Connecting took longer than the dial timeout. */
  | "dial-timeout"
  /** The VMM did not answer `CONNECT` within the handshake timeout (guest not booted, or hung). */
  | "handshake-timeout"
  /** The VMM answered `CONNECT` with something other than an `OK <port>` line. */
  | "bad-handshake"
  /** The byte stream was there but no gRPC (HTTP/2) session could be set up over it. */
  | "connection-failed"
  /** The connection dropped while a call was running: its outcome is unknown. */
  | "connection-lost"
  /** The transport itself is not available here (kernel vsock without the native package). */
  | "unavailable"
  /** A deadline (the caller's, or one the library derived from a timeout) passed. */
  | "deadline"
  /** The caller's AbortSignal fired. */
  | "cancelled"
  /** The client was closed. */
  | "closed"
  | "permission-denied"
  | "unauthenticated"
  | "not-found"
  | "already-exists"
  | "failed-precondition"
  | "resource-exhausted"
  /** The agent does not know the method (an older or different agent). */
  | "unimplemented"
  /**
   * The agent cannot do what was asked: it speaks only the original guest protocol
   * (signals, another user).
   */
  | "unsupported"
  /** A port forward could not connect inside the guest (the message names the errno). */
  | "forward-failed"
  /** The agent broke the protocol (messages out of order, a stream without its exit or final `end`). */
  | "protocol"
  /** `run(..., { check: true })`: the command exited non-zero or died by a signal. */
  | "command-failed"
  /** A copy's source is missing or unusable (a guest `error` message, a local stat failure). */
  | "source"
  /** The destination rules refuse the copy (a directory onto a file...). */
  | "destination"
  /** The guest sent a copy entry (a path or link) the host refuses to write. */
  | "unsafe-entry"
  /** A copied file's data did not match its declared size. */
  | "size-mismatch"
  /**
   * A copy's source file changed while it was read (it shrank, or, unless the caller
   * accepts changing files, it was written to), so no copy of it exists that was ever its
   * content; the destination keeps what it had under that name.
   */
  | "source-changed"
  /** The guest reported that it could not write what a copy sent (its errno name is in `guestCode`). */
  | "guest-failed"
  /** Reading or writing a local file during a copy failed (its errno name is in `errno`). */
  | "local-io"
  | "internal"
  | "unknown";

/** Fields of a GuestError besides its message. */
export interface GuestErrorInit {
  reason?: GuestErrorReason;
  /** The underlying error (a Node system error, a grpc-js status, the abort reason). */
  cause?: unknown;
}

/** The error everything in the host library throws or rejects with. */
export class GuestError extends Error {
  override readonly name: string = "GuestError";
  /** gRPC status code (`Code.UNAVAILABLE`, `Code.NOT_FOUND`...). */
  readonly code: Code;
  /** What happened, finer than `code`. */
  readonly reason: GuestErrorReason;
  /** The message without the context prefix: what the agent or the system said. */
  readonly details: string;

  constructor(code: Code, details: string, init: GuestErrorInit & { context?: string } = {}) {
    super(
      init.context ? `${init.context}: ${details}` : details,
      init.cause === undefined ? {} : { cause: init.cause },
    );
    this.code = code;
    this.reason = init.reason ?? reasonOfCode(code);
    this.details = details;
  }

  /** Whether the failure is about reaching the agent (code UNAVAILABLE), as opposed to a call's result. */
  get isUnavailable(): boolean {
    return this.code === Code.UNAVAILABLE;
  }
}

/** Reasons worth another connection attempt while an agent may still be coming up. */
const RETRIABLE_REASONS: ReadonlySet<GuestErrorReason> = new Set<GuestErrorReason>([
  "no-socket",
  "refused",
  "no-listener",
  "dial-timeout",
  "handshake-timeout",
  "connection-failed",
  "connection-lost",
  "unreachable",
]);

/**
 * Whether a connection-level failure may go away by itself (the VM is booting, the agent
 * is starting), so that retrying with a fresh connection makes sense. A bad handshake,
 * a permission problem or a missing native transport will not fix themselves.
 */
export function isRetriableConnectError(error: GuestError): boolean {
  return error.code === Code.UNAVAILABLE && RETRIABLE_REASONS.has(error.reason);
}

// Node errno names -> what they mean for reaching an agent.
const CONNECT_ERRNO: Record<string, { code: Code; reason: GuestErrorReason; text: string }> = {
  ENOENT: { code: Code.UNAVAILABLE, reason: "no-socket", text: "no such socket" },
  ENOTDIR: { code: Code.UNAVAILABLE, reason: "no-socket", text: "no such socket (a parent is not a directory)" },
  ECONNREFUSED: { code: Code.UNAVAILABLE, reason: "refused", text: "connection refused" },
  EAGAIN: { code: Code.UNAVAILABLE, reason: "refused", text: "connection refused (listen backlog full)" },
  ECONNRESET: { code: Code.UNAVAILABLE, reason: "connection-lost", text: "connection reset" },
  EPIPE: { code: Code.UNAVAILABLE, reason: "connection-lost", text: "connection closed (broken pipe)" },
  ETIMEDOUT: { code: Code.UNAVAILABLE, reason: "dial-timeout", text: "connection timed out" },
  EHOSTUNREACH: { code: Code.UNAVAILABLE, reason: "unreachable", text: "host unreachable" },
  ENETUNREACH: { code: Code.UNAVAILABLE, reason: "unreachable", text: "network unreachable" },
  EHOSTDOWN: { code: Code.UNAVAILABLE, reason: "unreachable", text: "host is down" },
  ENOTFOUND: { code: Code.UNAVAILABLE, reason: "unreachable", text: "host name not found" },
  EAI_AGAIN: { code: Code.UNAVAILABLE, reason: "unreachable", text: "host name lookup failed" },
  ENODEV: { code: Code.UNAVAILABLE, reason: "unavailable", text: "no vsock device" },
  EAFNOSUPPORT: { code: Code.UNAVAILABLE, reason: "unavailable", text: "address family not supported" },
  EACCES: { code: Code.PERMISSION_DENIED, reason: "permission-denied", text: "permission denied" },
  EPERM: { code: Code.PERMISSION_DENIED, reason: "permission-denied", text: "operation not permitted" },
  ENAMETOOLONG: { code: Code.INVALID_ARGUMENT, reason: "invalid-argument", text: "socket path too long" },
};

/** A failure to reach the agent, from a Node error raised while connecting. */
export function connectErrorFromErrno(error: unknown, context: string): GuestError {
  if (error instanceof GuestError) return error;
  const known = CONNECT_ERRNO[errnoOf(error)];
  if (known) return new GuestError(known.code, known.text, { reason: known.reason, cause: error, context });
  const text = error instanceof Error ? error.message : String(error);
  return new GuestError(Code.UNAVAILABLE, text, { reason: "unavailable", cause: error, context });
}

/**
 * An error the guest reported in-band: `errno` its errno name if any, `message` as it
 * said it. With an errno, the errno's own words replace the message: an agent's message
 * is often Node's text ("ENOENT: no such file or directory, lstat '/x'"), which repeats
 * the path the context already gives and names a syscall nobody asked about.
 */
export function guestReportedError(message: string, errno: string, context: string): GuestError {
  return new GuestError(statusOfErrno(errno) ?? Code.UNKNOWN, errnoText(errno) ?? message, { context });
}

/** The system's words for an errno name ("ENOENT" -> "no such file or directory"); undefined if it is not one. */
export function errnoText(name: string): string | undefined {
  const number = (constants.errno as Record<string, number | undefined>)[name];
  return number === undefined ? undefined : getSystemErrorMap().get(-number)?.[1];
}

/** A local failure in our words: its errno's text when it has one, its message otherwise. */
export function describeLocalError(error: unknown): string {
  // A system call's failure in the system's words; an error of our own (which may carry
  // an errno code too) keeps its message, which says more.
  const fromSyscall = typeof (error as { syscall?: unknown } | null)?.syscall === "string";
  const known = fromSyscall ? errnoText(errnoOf(error)) : undefined;
  return known ?? (error instanceof Error ? error.message : String(error));
}

/**
 * A failed call's status. Calls start only on a ready connection, so an UNAVAILABLE
 * here means the connection dropped under the call: its outcome is unknown. The
 * details are most often the agent's own words, and cut like any text from the guest.
 */
export function errorFromStatus(status: Partial<StatusObject>, context: string): GuestError {
  const code = typeof status.code === "number" ? (status.code as Code) : Code.UNKNOWN;
  const details = cutText(status.details || Code[code] || "unknown error", MAX_GUEST_MESSAGE);
  const reason: GuestErrorReason | undefined =
    code === Code.UNAVAILABLE ? "connection-lost" : code === Code.DEADLINE_EXCEEDED ? "deadline" : undefined;
  return new GuestError(code, details, { cause: status, context, ...(reason ? { reason } : {}) });
}

/** The error for a caller's AbortSignal having fired. */
export function cancelledError(signal: AbortSignal | undefined, context: string): GuestError {
  const reason = signal?.reason;
  // AbortSignal.timeout() aborts with a TimeoutError: that is a deadline, not a cancel.
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return new GuestError(Code.DEADLINE_EXCEEDED, "timed out", { reason: "deadline", cause: reason, context });
  }
  return new GuestError(Code.CANCELLED, "cancelled", { reason: "cancelled", cause: reason, context });
}

/** Any error as a GuestError: GuestErrors as they are, grpc-js statuses, errno errors, the rest as UNKNOWN. */
export function toGuestError(error: unknown, context: string): GuestError {
  if (error instanceof GuestError) return error;
  if (isStatusError(error)) return errorFromStatus(error, context);
  if (errnoOf(error)) return connectErrorFromErrno(error, context);
  const text = error instanceof Error ? error.message : String(error);
  return new GuestError(Code.UNKNOWN, text, { cause: error, context });
}

function isStatusError(error: unknown): error is Partial<StatusObject> {
  const e = error as { code?: unknown; details?: unknown } | null;
  return typeof e?.code === "number" && typeof e.details === "string";
}

function reasonOfCode(code: Code): GuestErrorReason {
  switch (code) {
    case Code.INVALID_ARGUMENT:
    case Code.OUT_OF_RANGE:
      return "invalid-argument";
    case Code.DEADLINE_EXCEEDED:
      return "deadline";
    case Code.CANCELLED:
      return "cancelled";
    case Code.PERMISSION_DENIED:
      return "permission-denied";
    case Code.UNAUTHENTICATED:
      return "unauthenticated";
    case Code.NOT_FOUND:
      return "not-found";
    case Code.ALREADY_EXISTS:
      return "already-exists";
    case Code.FAILED_PRECONDITION:
    case Code.ABORTED:
      return "failed-precondition";
    case Code.RESOURCE_EXHAUSTED:
      return "resource-exhausted";
    case Code.UNIMPLEMENTED:
      return "unimplemented";
    case Code.UNAVAILABLE:
      return "unavailable";
    case Code.INTERNAL:
    case Code.DATA_LOSS:
      return "internal";
    default:
      return "unknown";
  }
}
