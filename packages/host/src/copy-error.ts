// The error copyTo and copyFrom throw: a GuestError (so callers switch on `code` and
// `reason` as for every other call) with what only a copy knows: which kind of copy
// failure, the entry it is about, and how far the transfer got, so a caller can tell
// "nothing happened" from "some entries landed before the failure".
import { Code, GuestError, type GuestErrorReason, guestReportedError } from "./guest-error.js";

/**
 * Which kind of copy failure, finer than the gRPC code:
 * - `SOURCE`: the source is missing or unusable (a guest `error` message, a local stat failure);
 * - `DESTINATION`: the destination rules refuse the copy (a directory onto a file...);
 * - `UNSAFE_ENTRY`: the guest sent a path or link the host refuses to write;
 * - `SIZE_MISMATCH`: a file's data did not match its declared size;
 * - `SOURCE_CHANGED`: a source file changed while it was read (it shrank, or, unless the
 *   caller accepts changing files, it was written to), so no copy of it exists that was
 *   ever its content; the destination keeps what it had under that name;
 * - `PROTOCOL`: messages out of order, or a stream that ended without the final `end`;
 * - `GUEST`: the guest reported a failure (its errno name, when it gave one, is in `guestCode`);
 * - `LOCAL_IO`: reading or writing a local file failed (its errno name is in `errno`);
 * - `TRANSPORT`: the gRPC call failed;
 * - `ABORTED`: the caller's AbortSignal fired.
 */
export type CopyErrorKind =
  | "SOURCE"
  | "DESTINATION"
  | "UNSAFE_ENTRY"
  | "SIZE_MISMATCH"
  | "SOURCE_CHANGED"
  | "PROTOCOL"
  | "GUEST"
  | "LOCAL_IO"
  | "TRANSPORT"
  | "ABORTED";

/** Details a CopyError carries besides its message. */
export interface CopyErrorDetails {
  /** The entry the error is about (a guest path, or a path relative to the copy root). */
  path?: string;
  /** The errno name of a local failure ("ENOSPC"). */
  errno?: string;
  /** The guest's machine-readable cause ("EACCES", "SIZE_MISMATCH"), when it sent one. */
  guestCode?: string;
  /** Entries that were completed (and left in place) before the failure. */
  entriesCompleted?: number;
  /** File bytes that were completed before the failure. */
  bytesCompleted?: number;
  /** The gRPC code and reason, when the kind alone does not decide them (a failed call, an abort). */
  code?: Code;
  reason?: GuestErrorReason;
  cause?: unknown;
}

/** A failed copy. `kind` says what kind of copy failure; `code`/`reason` as for every GuestError. */
export class CopyError extends GuestError {
  override readonly name: string = "CopyError";
  readonly kind: CopyErrorKind;
  readonly path: string | undefined;
  readonly errno: string | undefined;
  readonly guestCode: string | undefined;
  /** Entries completed before the failure; 0 when it failed before anything landed. */
  readonly entriesCompleted: number;
  readonly bytesCompleted: number;

  constructor(kind: CopyErrorKind, message: string, details: CopyErrorDetails = {}) {
    const { code, reason } = classify(kind, details);
    super(code, message, { ...(reason === undefined ? {} : { reason }), cause: details.cause });
    this.kind = kind;
    this.path = details.path;
    this.errno = details.errno;
    this.guestCode = details.guestCode;
    this.entriesCompleted = details.entriesCompleted ?? 0;
    this.bytesCompleted = details.bytesCompleted ?? 0;
  }
}

function classify(kind: CopyErrorKind, details: CopyErrorDetails): { code: Code; reason?: GuestErrorReason } {
  if (details.code !== undefined) return { code: details.code, ...(details.reason ? { reason: details.reason } : {}) };
  const errno = details.errno ?? details.guestCode ?? "";
  // The library's one errno mapping decides the code when there is an errno to go by.
  const byErrno = errno === "" ? Code.UNKNOWN : guestReportedError("", errno, "").code;
  switch (kind) {
    case "SOURCE":
    case "DESTINATION":
    case "GUEST":
    case "LOCAL_IO":
      if (byErrno !== Code.UNKNOWN) return { code: byErrno };
      return { code: kind === "GUEST" ? Code.UNKNOWN : kind === "LOCAL_IO" ? Code.INTERNAL : Code.FAILED_PRECONDITION };
    case "UNSAFE_ENTRY":
      return { code: Code.PERMISSION_DENIED };
    case "SIZE_MISMATCH":
      return { code: Code.DATA_LOSS, reason: "protocol" };
    case "SOURCE_CHANGED":
      // gRPC's code for a concurrency conflict that a retry at a higher level may resolve.
      return { code: Code.ABORTED };
    case "PROTOCOL":
      return { code: Code.INTERNAL, reason: "protocol" };
    case "TRANSPORT":
      return { code: Code.UNKNOWN };
    case "ABORTED":
      return { code: Code.CANCELLED, reason: "cancelled" };
  }
}
