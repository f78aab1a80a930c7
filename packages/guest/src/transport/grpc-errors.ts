// The agent's gRPC statuses for Node errors (by errno, through the protocol's one table).
import * as grpc from "@grpc/grpc-js";
import { describeError, errnoOf, statusOfErrno } from "@guestkit/protocol";

/** The gRPC status code for an error: by errno when it has one, else INTERNAL. */
export function grpcCodeOf(error: unknown): grpc.status {
  return statusOfErrno(errnoOf(error)) ?? grpc.status.INTERNAL;
}

/** A status object for `callback(err)` / `call.destroy(err)` / `call.emit("error")`. */
export function grpcError(code: grpc.status, details: string): Partial<grpc.StatusObject> & Error {
  return Object.assign(new Error(details), { code, details });
}

/** A status object built from a Node error. */
export function grpcErrorFrom(error: unknown, context?: string): Partial<grpc.StatusObject> & Error {
  const text = describeError(error);
  return grpcError(grpcCodeOf(error), context ? `${context}: ${text}` : text);
}
