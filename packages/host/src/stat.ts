// StatPath as a plain object.
import { create } from "@bufbuild/protobuf";
import {
  cutText,
  FileType,
  MAX_GUEST_MESSAGE,
  MAX_GUEST_PATH,
  StatPathRequestSchema,
  type StatPathResponse,
} from "@guestkit/protocol";
import { Code, cancelledError, errorFromStatus, GuestError, guestReportedError } from "./guest-error.js";
import type { GuestConnection } from "./transport/guest-connection.js";

/** The kind of a file system entry. */
export type GuestFileType =
  | "file"
  | "directory"
  | "symlink"
  | "fifo"
  | "socket"
  | "char-device"
  | "block-device"
  /** An agent that does not report it, for something other than a file, directory or link. */
  | "unknown";

/** A path that exists. */
export interface GuestStatFound {
  readonly exists: true;
  readonly type: GuestFileType;
  /** Permission bits including setuid/setgid/sticky (st_mode & 0o7777). */
  readonly mode: number;
  readonly size: number;
  /** Modification time; null from an agent that does not report it. */
  readonly mtime: Date | null;
  /** The same in nanoseconds since the epoch, exactly. */
  readonly mtimeNs: bigint | null;
  /** Owner; null from an agent that does not report it. */
  readonly uid: number | null;
  readonly gid: number | null;
  /** Where a symlink points (with followLinks: false), else null. */
  readonly linkTarget: string | null;
}

/** What stat() returns: a missing path is a result, not an error. */
export type GuestStat = GuestStatFound | { readonly exists: false };

/** Options of stat(). */
export interface StatOptions {
  /** Describe what a symlink points to rather than the link. Default false. */
  followLinks?: boolean;
  signal?: AbortSignal;
  /** Default: the client's. */
  connectTimeoutMs?: number;
  /** Give up after this long (a gRPC deadline). Default 30 s. */
  timeoutMs?: number;
}

const DEFAULT_STAT_TIMEOUT_MS = 30_000;

const TYPES: Partial<Record<FileType, GuestFileType>> = {
  [FileType.REGULAR]: "file",
  [FileType.DIRECTORY]: "directory",
  [FileType.SYMLINK]: "symlink",
  [FileType.FIFO]: "fifo",
  [FileType.SOCKET]: "socket",
  [FileType.CHAR_DEVICE]: "char-device",
  [FileType.BLOCK_DEVICE]: "block-device",
};

/** Describes one path in the guest. Rejects with a GuestError when it cannot be examined. */
export async function statPath(
  connection: GuestConnection,
  path: string,
  options: StatOptions = {},
): Promise<GuestStat> {
  const where = `${connection.context}: stat ${path}`;
  if (typeof path !== "string" || path === "" || path.includes("\0")) {
    throw new GuestError(Code.INVALID_ARGUMENT, "bad path", { context: where });
  }
  const channel = await connection.ready({
    ...(options.connectTimeoutMs !== undefined ? { deadline: Date.now() + options.connectTimeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (options.signal?.aborted) throw cancelledError(options.signal, where);
  const request = create(StatPathRequestSchema, { path, followLinks: options.followLinks === true });
  const response = await new Promise<StatPathResponse>((resolve, reject) => {
    const call = channel.guest.statPath(
      request,
      channel.metadata(),
      { deadline: Date.now() + (options.timeoutMs ?? DEFAULT_STAT_TIMEOUT_MS) },
      (error, value) => {
        options.signal?.removeEventListener("abort", onAbort);
        if (error)
          reject(options.signal?.aborted ? cancelledError(options.signal, where) : errorFromStatus(error, where));
        else if (value) resolve(value);
        else reject(new GuestError(Code.INTERNAL, "empty response", { reason: "protocol", context: where }));
      },
    );
    const onAbort = () => call.cancel();
    options.signal?.addEventListener("abort", onAbort, { once: true });
  });
  return statFromResponse(response, where);
}

/** Turns a StatPathResponse into a GuestStat; throws the in-band error, if any. */
export function statFromResponse(response: StatPathResponse, where: string): GuestStat {
  if (response.error) throw guestReportedError(cutText(response.error, MAX_GUEST_MESSAGE), response.errorCode, where);
  if (!response.exists) return { exists: false };
  // An agent that knows only the original fields leaves file_type unset, and its zero
  // mtime/uid/gid mean "not reported", not the epoch and root.
  const extended = response.fileType !== FileType.UNSPECIFIED;
  const type: GuestFileType = extended
    ? (TYPES[response.fileType] ?? "unknown")
    : response.isSymlink
      ? "symlink"
      : response.isDir
        ? "directory"
        : response.isFile
          ? "file"
          : "unknown";
  const mtimeNs = extended ? response.mtime * 1_000_000_000n + BigInt(response.mtimeNanos) : null;
  return {
    exists: true,
    type,
    mode: response.mode & 0o7777,
    size: Math.max(0, Number(response.size)),
    mtime: mtimeNs === null ? null : new Date(Number(mtimeNs / 1_000_000n)),
    mtimeNs,
    uid: extended ? response.uid : null,
    gid: extended ? response.gid : null,
    linkTarget: response.isSymlink || type === "symlink" ? cutText(response.linkTarget, MAX_GUEST_PATH) : null,
  };
}
