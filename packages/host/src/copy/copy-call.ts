// The gRPC side of the copy functions: StatPath as a promise, and gRPC failures and
// aborts turned into CopyErrors.
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type DataConnectionError,
  type GuestServiceClient,
  StatPathRequestSchema,
  type StatPathResponse,
} from "@guestkit/protocol";
import { Code, cancelledError, errorFromStatus } from "../guest-error.js";
import { CopyError, type CopyErrorDetails } from "./copy-error.js";

/** StatPath of a guest path; an abort cancels the call. */
export function statGuestPath(
  client: GuestServiceClient,
  path: string,
  followLinks: boolean,
  metadata: grpc.Metadata | undefined,
  signal: AbortSignal | undefined,
): Promise<StatPathResponse> {
  return new Promise((resolve, reject) => {
    const call = client.statPath(
      create(StatPathRequestSchema, { path, followLinks }),
      metadata ?? new grpc.Metadata(),
      {},
      (error, response) => {
        signal?.removeEventListener("abort", onAbort);
        if (signal?.aborted) reject(abortedError(signal));
        else if (error) reject(callError(error, `StatPath ${path}`));
        else if (!response) reject(new CopyError("protocol", `StatPath ${path}: no response`));
        else resolve(response);
      },
    );
    const onAbort = () => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The CopyError for a failed gRPC call. */
export function callError(error: unknown, context: string, details: CopyErrorDetails = {}): CopyError {
  const status = error as Partial<grpc.StatusObject>;
  const guestError = errorFromStatus(
    typeof status.code === "number" ? status : { code: Code.UNKNOWN, details: String(error) },
    context,
  );
  const hint = guestError.code === Code.UNIMPLEMENTED ? " (the guest agent does not support this call)" : "";
  return new CopyError(guestError.reason, `${guestError.message}${hint}`, {
    ...details,
    code: guestError.code,
    cause: error,
  });
}

/** The CopyError for a data connection that was lost, or broke the framing. */
export function dataConnectionError(error: DataConnectionError, details: CopyErrorDetails = {}): CopyError {
  if (error.kind === "protocol") {
    return new CopyError("protocol", `protocol error on the data connection: ${error.message}`, {
      ...details,
      cause: error,
    });
  }
  // UNAVAILABLE, as for the call's own connection lost mid-call.
  return new CopyError("connection-lost", `the data connection to the agent was lost: ${error.message}`, {
    ...details,
    code: Code.UNAVAILABLE,
    cause: error,
  });
}

/** The CopyError for a transfer stopped by the caller's AbortSignal (a deadline if it was AbortSignal.timeout). */
export function abortedError(signal: AbortSignal, details: CopyErrorDetails = {}): CopyError {
  const guestError = cancelledError(signal, "copy");
  const text = guestError.reason === "deadline" ? "the copy timed out" : "the copy was aborted";
  return new CopyError(guestError.reason, text, {
    ...details,
    code: guestError.code,
    cause: signal.reason,
  });
}
