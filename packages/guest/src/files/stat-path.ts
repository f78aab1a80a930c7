// StatPath: describes one path. A missing path is an answer (exists=false, status OK),
// not an error, because hosts ask "is it there?" before they copy.
import type { BigIntStats } from "node:fs";
import { lstat, readlink, stat } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import { fileTypeOf, permissionBits, splitNanoseconds } from "@guestkit/copy";
import {
  describeError,
  errnoOf,
  errorCodeOf,
  type GuestServiceHandlers,
  type StatPathRequest,
  type StatPathResponse,
  StatPathResponseSchema,
} from "@guestkit/protocol";
import { grpcErrorFrom } from "../transport/grpc-errors.js";
import { checkGuestPath } from "./guest-path.js";

/**
 * The StatPath handler. `lstat` unless `follow_links`, so a symlink is reported as a
 * symlink (with its target) rather than as what it points to. Following a dangling link
 * answers exists=false, like any other path that leads nowhere. Failures other than
 * "does not exist" (EACCES on a parent, ENOTDIR, ELOOP...) come back in-band in `error`
 * and `error_code` with status OK, which is what existing hosts read.
 */
export const handleStatPath: GuestServiceHandlers["statPath"] = (call, callback) => {
  statPath(call.request).then(
    (response) => callback(null, response),
    (error: unknown) => callback(grpcErrorFrom(error, "StatPath")),
  );
};

/** Describes `request.path`; never rejects for a problem with the path itself. */
export async function statPath(request: StatPathRequest): Promise<StatPathResponse> {
  const problem = checkGuestPath(request.path);
  if (problem) return create(StatPathResponseSchema, { error: problem, errorCode: "EINVAL" });
  let stats: BigIntStats;
  try {
    stats = request.followLinks
      ? await stat(request.path, { bigint: true })
      : await lstat(request.path, { bigint: true });
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return create(StatPathResponseSchema, { exists: false });
    return create(StatPathResponseSchema, { error: describeError(error), errorCode: errorCodeOf(error) });
  }
  const mtime = splitNanoseconds(stats.mtimeNs);
  return create(StatPathResponseSchema, {
    exists: true,
    isDir: stats.isDirectory(),
    isFile: stats.isFile(),
    isSymlink: stats.isSymbolicLink(),
    // The link can be replaced between lstat and readlink; the rest of the answer still holds.
    linkTarget: stats.isSymbolicLink() ? await readlink(request.path).catch(() => "") : "",
    mode: permissionBits(stats.mode),
    size: stats.size,
    mtime: mtime.seconds,
    mtimeNanos: mtime.nanos,
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    fileType: fileTypeOf(stats),
  });
}
