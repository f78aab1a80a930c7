// The in-band error codes: the machine-readable cause a peer puts beside an error text
// (CopyToGuestResponse.error_code, CopyFromGuestError.code, CopyFromGuestSkipped.code,
// StatPathResponse.error_code, ForwardPortConnectError.code), and what each means as a
// gRPC status. Both sides read and write them through this module only.
import { status } from "@grpc/grpc-js";

/** An errno name as Node reports it: "ENOENT", "EACCES", "ENOTFOUND"... */
export type ErrnoName = `E${string}`;

/** The codes of our own, for causes no errno names. */
export const ErrorCode = {
  /** A file's data did not match its declared size (it shrank while read, or fewer bytes came). */
  SIZE_MISMATCH: "SIZE_MISMATCH",
  /** Messages out of order or out of bounds: the peer broke the framing. */
  PROTOCOL: "PROTOCOL",
  /** A FIFO, socket or device: never opened, so skipped. */
  SPECIAL_FILE: "SPECIAL_FILE",
  /** An entry that was replaced by another while the tree was walked. */
  CHANGED: "CHANGED",
} as const;

/** Every in-band code: an errno name or one of ErrorCode. */
export type ErrorCode = ErrnoName | (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * The code of a failure that carries no errno (an error of Node's own, a bug): an I/O
 * error nobody named. An errno name, so that every code is an errno name or ErrorCode.
 */
export const FALLBACK_ERRNO = "EIO";

/** The errno name of a Node system error ("ENOENT"), or "" when it has none. */
export function errnoOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "";
}

/** What went wrong, in words: an error's own message (the `reason` of a skipped entry, a log line). */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The in-band code for a failure: its errno name, FALLBACK_ERRNO when it has none. */
export function errorCodeOf(error: unknown): string {
  return errnoOf(error) || FALLBACK_ERRNO;
}

// Errno name -> the gRPC status it means, the same for the agent's own failures and for
// an errno the agent reported in-band.
const STATUS_OF_ERRNO: Readonly<Record<string, status>> = {
  ENOENT: status.NOT_FOUND,
  ENOTDIR: status.NOT_FOUND,
  EACCES: status.PERMISSION_DENIED,
  EPERM: status.PERMISSION_DENIED,
  EROFS: status.PERMISSION_DENIED,
  EEXIST: status.ALREADY_EXISTS,
  EISDIR: status.FAILED_PRECONDITION,
  ENOTEMPTY: status.FAILED_PRECONDITION,
  ELOOP: status.FAILED_PRECONDITION,
  ENOSPC: status.RESOURCE_EXHAUSTED,
  EDQUOT: status.RESOURCE_EXHAUSTED,
  EMFILE: status.RESOURCE_EXHAUSTED,
  ENFILE: status.RESOURCE_EXHAUSTED,
  ENOMEM: status.RESOURCE_EXHAUSTED,
  ENAMETOOLONG: status.INVALID_ARGUMENT,
  EINVAL: status.INVALID_ARGUMENT,
};

/** The gRPC status an errno name means, or undefined for one that decides none. */
export function statusOfErrno(name: string): status | undefined {
  return Object.hasOwn(STATUS_OF_ERRNO, name) ? STATUS_OF_ERRNO[name] : undefined;
}
