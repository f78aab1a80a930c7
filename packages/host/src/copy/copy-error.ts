// The error copyTo and copyFrom throw: a GuestError (so callers switch on `code` and
// `reason` as for every other call; the copy reasons are "source" ... "local-io") with
// what only a copy knows: the entry it is about, the errno names, and how far the
// transfer got, so a caller can tell "nothing happened" from "some entries landed
// before the failure".
import { statusOfErrno } from "@guestkit/protocol";
import { Code, GuestError, type GuestErrorReason } from "../guest-error.js";

/** Details a CopyError carries besides its reason and message. */
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
  /** The gRPC code, when the reason alone does not decide it (a failed call, an abort). */
  code?: Code;
  cause?: unknown;
}

/** A failed copy: `reason` says what failed, `code` as for every GuestError. */
export class CopyError extends GuestError {
  override readonly name: string = "CopyError";
  readonly path: string | undefined;
  readonly errno: string | undefined;
  readonly guestCode: string | undefined;
  /** Entries completed before the failure; 0 when it failed before anything landed. */
  readonly entriesCompleted: number;
  readonly bytesCompleted: number;

  constructor(reason: GuestErrorReason, message: string, details: CopyErrorDetails = {}) {
    super(details.code ?? codeOf(reason, details.errno ?? details.guestCode ?? ""), message, {
      reason,
      cause: details.cause,
    });
    this.path = details.path;
    this.errno = details.errno;
    this.guestCode = details.guestCode;
    this.entriesCompleted = details.entriesCompleted ?? 0;
    this.bytesCompleted = details.bytesCompleted ?? 0;
  }
}

function codeOf(reason: GuestErrorReason, errno: string): Code {
  switch (reason) {
    case "source":
    case "destination":
    case "guest-failed":
    case "local-io":
      // The library's one errno mapping decides the code when there is an errno to go by.
      return (
        statusOfErrno(errno) ??
        (reason === "guest-failed" ? Code.UNKNOWN : reason === "local-io" ? Code.INTERNAL : Code.FAILED_PRECONDITION)
      );
    case "unsafe-entry":
      return Code.PERMISSION_DENIED;
    case "size-mismatch":
      return Code.DATA_LOSS;
    case "source-changed":
      // gRPC's code for a concurrency conflict that a retry at a higher level may resolve.
      return Code.ABORTED;
    case "protocol":
      return Code.INTERNAL;
    case "cancelled":
      return Code.CANCELLED;
    default:
      return Code.UNKNOWN;
  }
}
