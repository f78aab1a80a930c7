// CopyFromGuest: streams a file, symlink or whole tree out of the guest.

import { create } from "@bufbuild/protobuf";
import { encodeDownload } from "@guestkit/copy";
import { CopyFromGuestResponseSchema, describeError, type GuestServiceHandlers } from "@guestkit/protocol";
import { logError } from "../log.js";
import { grpcErrorFrom } from "../transport/grpc-errors.js";
import { CallClosedError, writeMessage } from "../transport/stream-writer.js";
import { checkGuestPath } from "./guest-path.js";

/**
 * The CopyFromGuest handler: the copy engine's encodeDownload (which states the framing)
 * with each message written to the call as fast as the client takes them. A bad path is
 * one `error` message (message, path, code) and a normal end of the call, as existing
 * hosts expect; only a failure of the agent itself ends the call with a gRPC status.
 */
export const handleCopyFromGuest: GuestServiceHandlers["copyFromGuest"] = (call) => {
  const { path, followLinks, batch } = call.request;
  const problem = checkGuestPath(path);
  const sent = problem
    ? writeMessage(
        call,
        create(CopyFromGuestResponseSchema, {
          response: { case: "error", value: { message: problem, path, code: "EINVAL" } },
        }),
      )
    : encodeDownload({ path, followLinks, batch }, (response) => writeMessage(call, response));
  sent.then(
    () => call.end(),
    (error: unknown) => {
      if (error instanceof CallClosedError) return;
      logError(`CopyFromGuest: ${describeError(error)}`);
      call.emit("error", grpcErrorFrom(error, "CopyFromGuest"));
    },
  );
};
