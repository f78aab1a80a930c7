// The agent's one mapping from Node errors (errno codes) to gRPC status codes.
import * as grpc from "@grpc/grpc-js";

const codeByErrno: Record<string, grpc.status> = {
  ENOENT: grpc.status.NOT_FOUND,
  ENOTDIR: grpc.status.NOT_FOUND,
  EACCES: grpc.status.PERMISSION_DENIED,
  EPERM: grpc.status.PERMISSION_DENIED,
  EROFS: grpc.status.PERMISSION_DENIED,
  EEXIST: grpc.status.ALREADY_EXISTS,
  EISDIR: grpc.status.FAILED_PRECONDITION,
  ENOTEMPTY: grpc.status.FAILED_PRECONDITION,
  ELOOP: grpc.status.FAILED_PRECONDITION,
  ENOSPC: grpc.status.RESOURCE_EXHAUSTED,
  EDQUOT: grpc.status.RESOURCE_EXHAUSTED,
  EMFILE: grpc.status.RESOURCE_EXHAUSTED,
  ENFILE: grpc.status.RESOURCE_EXHAUSTED,
  ENOMEM: grpc.status.RESOURCE_EXHAUSTED,
  ENAMETOOLONG: grpc.status.INVALID_ARGUMENT,
  EINVAL: grpc.status.INVALID_ARGUMENT,
};

/** The errno name of a Node system error ("ENOENT"), or "" when it has none. */
export function errnoCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "";
}

/** The gRPC status code for an error: by errno when it has one, else INTERNAL. */
export function grpcCodeOf(error: unknown): grpc.status {
  return codeByErrno[errnoCode(error)] ?? grpc.status.INTERNAL;
}

/** A message without Node's "ENOENT: " prefix noise doubled, for in-band errors. */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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
