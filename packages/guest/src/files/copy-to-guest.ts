// CopyToGuest: receives files, directories and symlinks and commits each one atomically,
// through the copy engine's TreeWriter with the agent's path policy (absolute paths,
// missing parents made as `mkdir -p` does).
import { dirname, posix } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  type EntryAttributes,
  EntryError,
  type EntryKind,
  type OpenDirectory,
  type PathPolicy,
  TreeWriter,
} from "@guestkit/copy";
import {
  type CopyToGuestRequest,
  CopyToGuestRequestSchema,
  type CopyToGuestResponse,
  CopyToGuestResponseSchema,
  type CopyToGuestStart,
  DataConnectionError,
  type GuestServiceHandlers,
  readFrames,
} from "@guestkit/protocol";
import { asksForDataConnection, type DataConnections, type DataTicket } from "../transport/data-connections.js";
import { grpcErrorFrom } from "../transport/grpc-errors.js";
import { checkGuestPath } from "./guest-path.js";
import { makeParents } from "./make-parents.js";

// Modes for mode = 0, as the protocol defines them.
const DEFAULT_FILE_MODE = 0o644;
const DEFAULT_DIRECTORY_MODE = 0o755;

/**
 * The CopyToGuest handler.
 *
 * Framing: each entry is `start`, then `data` chunks (files only), then `end`. Existing
 * hosts send one entry per stream; a stream may also carry many entries one after
 * another (start, data..., end, start, ...), which is how a tree travels without a
 * round trip per file. A guestkit client packs many whole small entries into one
 * `batch` message, as the agent announces (the `copy-batch` capability); each of them is
 * handled exactly like start, data, end.
 *
 * Each entry takes effect when its `end` arrives. A file is written to
 * `.NAME.guestkit-TAG-N` in the target directory, given owner (chown before chmod, as
 * chown clears setuid/setgid), exact mode and mtime, fsynced (where the file system
 * keeps anything), and renamed over the target only if exactly `size` bytes arrived. A
 * symlink is made under a temporary name and renamed over the target too. A directory
 * is created (owner-only until it is finished) or, if it exists, updated; its owner,
 * mode and mtime are set once the stream leaves it (deepest directories first), because
 * writing into a directory changes its mtime. Mode 0 means 0644 for a new file, 0755 for
 * a new directory, and "leave as it is" for an existing directory. Owner is set when uid
 * or gid is non-zero, or exactly (0:0 included) when `chown` is set. Missing parents are
 * created with mode 0755.
 *
 * Failure: the stream stops at the first entry that fails (a bad start, a file system
 * error, an mtime the file system does not keep (EINVAL, see @guestkit/copy's
 * timestamp.ts), SIZE_MISMATCH when more or fewer bytes than `size` arrive, PROTOCOL for
 * framing errors such as data before start or a new start before end). That entry's
 * temporary file is removed and its target is left as it was; entries committed before
 * it stay, with their directory times applied. The response says success=false with
 * `error`, `error_path`, `error_code`, and counts only what was committed in
 * `entries_written` and `bytes_written`; the rest of the stream is not read. All of this
 * is in-band with status OK, which is how existing hosts read failures. A cancelled or
 * disconnected call is treated the same way, except that nobody is left to answer.
 *
 * A client that asks for a data connection (data-connection.ts) gets a ticket in the
 * response headers and sends the same requests on that connection instead; a data
 * connection that does not come in time, or is lost before its end frame, fails the
 * upload like a framing error (the entry being written is removed). The answer goes on
 * the call either way.
 */
export function createCopyToGuestHandler(data: DataConnections): GuestServiceHandlers["copyToGuest"] {
  return (call, callback) => {
    const offered = asksForDataConnection(call) ? data.offer(call) : undefined;
    const requests = offered ? requestsOn(offered) : (call as AsyncIterable<CopyToGuestRequest>);
    receiveUpload(requests, () => call.cancelled).then(
      (response) => {
        offered?.withdraw();
        callback(null, response);
      },
      (error: unknown) => {
        offered?.withdraw();
        callback(grpcErrorFrom(error, "CopyToGuest"));
      },
    );
  };
}

async function* requestsOn(offered: DataTicket): AsyncGenerator<CopyToGuestRequest> {
  yield* readFrames(await offered.connection, CopyToGuestRequestSchema);
}

async function receiveUpload(
  requests: AsyncIterable<CopyToGuestRequest>,
  cancelled: () => boolean,
): Promise<CopyToGuestResponse> {
  const writer = new TreeWriter(new GuestPathPolicy());
  const totals = () => ({ entriesWritten: BigInt(writer.entriesWritten), bytesWritten: writer.bytesWritten });
  try {
    // One message at a time: the next one is read only after the previous one's write
    // finished, so a fast host cannot make the agent buffer a file in memory.
    for await (const { request } of requests) {
      if (request.case === "start") await writer.begin(request.value);
      else if (request.case === "data") await writer.write(request.value);
      else if (request.case === "end") await writer.end();
      else if (request.case === "batch")
        await writer.batch(request.value.entries.map(({ start, data }) => ({ header: start, data })));
      else throw EntryError.protocol("", "a request with no start, data or end, and no batch");
    }
    await writer.finish();
    return create(CopyToGuestResponseSchema, { success: true, ...totals() });
  } catch (error) {
    const openPath = writer.openFilePath;
    await writer.abort();
    // A background commit that failed first is the cause; what the stream did after it
    // (or its cancellation) is a consequence.
    const failure =
      writer.failure ??
      (cancelled()
        ? new EntryError("local-io", "ECANCELED", "", "the call was cancelled")
        : error instanceof DataConnectionError
          ? // No data connection, or one that ended before its end frame: broken framing.
            EntryError.protocol(openPath ?? "", error.message)
          : EntryError.io(error, ""));
    return create(CopyToGuestResponseSchema, {
      success: false,
      error: failure.message,
      errorPath: failure.path,
      errorCode: failure.code,
      ...totals(),
    });
  }
}

/** The agent's side: absolute paths, parents made as needed, links followed as `mkdir -p` does. */
class GuestPathPolicy implements PathPolicy<CopyToGuestStart> {
  readonly durable = true;
  readonly followLinks = true;
  // Directories found or made, so a tree of thousands of files does not stat them every time.
  readonly #known = new Set<string>();
  // Directories the stream has left, with what was applied: entered again, they get it again.
  readonly #left = new Map<string, OpenDirectory["final"]>();

  locate(start: CopyToGuestStart, kind: EntryKind): { local: string; linkDepth: number } {
    const problem = checkGuestPath(start.path);
    if (problem) throw EntryError.invalid(start.path, problem);
    const name = posix.basename(start.path);
    if (kind !== "dir" && (start.path.endsWith("/") || name === "." || name === "..")) {
      throw EntryError.invalid(start.path, "not a file name");
    }
    return { local: stripTrailingSlashes(start.path), linkDepth: 0 };
  }

  async enterParents(
    parent: string,
    top: OpenDirectory | undefined,
    _entryPath: string,
    enter: (directory: OpenDirectory) => void,
  ): Promise<void> {
    await makeParents(parent, this.#known);
    if (this.#left.size === 0) return;
    const again: OpenDirectory[] = [];
    for (let directory = parent; directory !== top?.local; directory = dirname(directory)) {
      const final = this.#left.get(directory);
      if (final) again.unshift({ local: directory, path: directory, final });
      if (directory === "/") break;
    }
    for (const directory of again) enter(directory);
  }

  attributes(start: CopyToGuestStart, kind: EntryKind, created: boolean): EntryAttributes {
    const given = start.mode & 0o7777;
    const defaultMode = created ? (kind === "dir" ? DEFAULT_DIRECTORY_MODE : DEFAULT_FILE_MODE) : undefined;
    const mode = given || defaultMode;
    const wantsOwner = start.chown || start.uid !== 0 || start.gid !== 0;
    const wantsTime = start.mtime !== 0n || start.mtimeNanos !== 0;
    return {
      ...(mode === undefined ? {} : { mode }),
      ...(wantsOwner ? { owner: { uid: start.uid, gid: start.gid } } : {}),
      ...(wantsTime ? { mtime: { seconds: start.mtime, nanos: start.mtimeNanos } } : {}),
    };
  }

  committed(local: string, kind: EntryKind): void {
    if (kind === "dir") this.#known.add(local);
    // A directory path may have just become a link.
    else if (kind === "symlink") this.#known.delete(local);
  }

  left(directory: OpenDirectory): void {
    if (directory.final) this.#left.set(directory.local, directory.final);
  }
}

function stripTrailingSlashes(path: string): string {
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end -= 1;
  return path.slice(0, end);
}
