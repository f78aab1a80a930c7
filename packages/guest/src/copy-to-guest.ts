// CopyToGuest: receives files, directories and symlinks and commits each one atomically.
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type CopyToGuestRequest,
  type CopyToGuestResponse,
  CopyToGuestResponseSchema,
  type GuestServiceHandlers,
} from "@guestkit/protocol";
import { grpcErrorFrom } from "./grpc-errors.js";
import { UploadError, UploadSession } from "./upload-session.js";

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
 * `.NAME.guestkit-RANDOM` in the target directory, fsynced, given owner (chown before
 * chmod, as chown clears setuid/setgid), exact mode and mtime, and renamed over the
 * target only if exactly `size` bytes arrived. A symlink is made under a temporary name
 * and renamed over the target too. A directory is created or, if it exists, updated; its
 * mtime is set when the stream ends (deepest directories first), because writing into a
 * directory changes its mtime. Mode 0 means 0644 for a new file, 0755 for a new
 * directory, and "leave as it is" for an existing directory. Owner is set when uid or gid
 * is non-zero, or exactly (0:0 included) when `chown` is set. Missing parents are created
 * with mode 0755.
 *
 * Failure: the stream stops at the first entry that fails (a bad start, a file system
 * error, an mtime the file system does not keep (EINVAL, see file-times.ts), SIZE_MISMATCH
 * when more or fewer bytes than `size` arrive, PROTOCOL for framing errors such as data
 * before start or a new start before end). That entry's temporary
 * file is removed and its target is left as it was; entries committed before it stay,
 * with their directory times applied. The response says success=false with `error`,
 * `error_path`, `error_code`, and counts only what was committed in `entries_written`
 * and `bytes_written`; the rest of the stream is not read. All of this is in-band with
 * status OK, which is how existing hosts read failures. A cancelled or disconnected call
 * is treated the same way, except that nobody is left to answer.
 */
export const handleCopyToGuest: GuestServiceHandlers["copyToGuest"] = (call, callback) => {
  receiveUpload(call).then(
    (response) => callback(null, response),
    (error: unknown) => callback(grpcErrorFrom(error, "CopyToGuest")),
  );
};

async function receiveUpload(
  call: grpc.ServerReadableStream<CopyToGuestRequest, CopyToGuestResponse>,
): Promise<CopyToGuestResponse> {
  const session = new UploadSession();
  try {
    // One message at a time: the next one is read only after the previous one's write
    // finished, so a fast host cannot make the agent buffer a file in memory.
    for await (const request of call as AsyncIterable<CopyToGuestRequest>) {
      await session.receive(request);
    }
    await session.finish();
    return create(CopyToGuestResponseSchema, { success: true, ...session.totals });
  } catch (error) {
    await session.abort();
    // A background commit that failed first is the cause; what the stream did after it
    // (or its cancellation) is a consequence.
    const failure =
      session.commitFailure ??
      (call.cancelled ? new UploadError("ECANCELED", "", "the call was cancelled") : UploadError.from(error, ""));
    return create(CopyToGuestResponseSchema, {
      success: false,
      error: failure.message,
      errorPath: failure.path,
      errorCode: failure.code,
      ...session.totals,
    });
  }
}
