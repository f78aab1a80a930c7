// CopyFromGuest: streams a file, symlink or whole tree out of the guest.

import { lstat, stat } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { type DownloadRequest, encodeDownload } from "@guestkit/copy";
import {
  type CopyFromGuestRequest,
  type CopyFromGuestResponse,
  CopyFromGuestResponseSchema,
  DATA_CONNECTION_MIN_BYTES,
  DataConnectionError,
  describeError,
  FrameWriter,
  type GuestServiceHandlers,
} from "@guestkit/protocol";
import { logError } from "../log.js";
import { asksForDataConnection, type DataConnections } from "../transport/data-connections.js";
import { grpcError, grpcErrorFrom } from "../transport/grpc-errors.js";
import { CallClosedError, writeMessage } from "../transport/stream-writer.js";
import { checkGuestPath } from "./guest-path.js";

/**
 * The CopyFromGuest handler: the copy engine's encodeDownload (which states the framing)
 * with each message written to the call as fast as the client takes them. A bad path is
 * one `error` message (message, path, code) and a normal end of the call, as existing
 * hosts expect; only a failure of the agent itself ends the call with a gRPC status.
 *
 * A client that asks for a data connection (data-connection.ts) gets one for a tree or
 * a file of at least DATA_CONNECTION_MIN_BYTES: a ticket in the response headers, the
 * same messages on that connection, then its end frame, then the call's OK. Anything
 * smaller stays in-band, where a second connection would cost more than it saves. A
 * data connection that does not come in time, or is lost, ends the call with UNAVAILABLE.
 */
export function createCopyFromGuestHandler(data: DataConnections): GuestServiceHandlers["copyFromGuest"] {
  return (call) => {
    const { path, followLinks, batch } = call.request;
    const problem = checkGuestPath(path);
    const sent = problem
      ? writeMessage(
          call,
          create(CopyFromGuestResponseSchema, {
            response: { case: "error", value: { message: problem, path, code: "EINVAL" } },
          }),
        )
      : sendDownload(call, data, { path, followLinks, batch });
    sent.then(
      () => call.end(),
      (error: unknown) => {
        if (error instanceof CallClosedError || call.cancelled) return;
        if (error instanceof DataConnectionError) {
          call.emit("error", grpcError(grpc.status.UNAVAILABLE, `CopyFromGuest: ${error.message}`));
          return;
        }
        logError(`CopyFromGuest: ${describeError(error)}`);
        call.emit("error", grpcErrorFrom(error, "CopyFromGuest"));
      },
    );
  };
}

async function sendDownload(
  call: grpc.ServerWritableStream<CopyFromGuestRequest, CopyFromGuestResponse>,
  data: DataConnections,
  request: DownloadRequest,
): Promise<void> {
  if (!asksForDataConnection(call) || !(await isBulk(request))) {
    return encodeDownload(request, (response) => writeMessage(call, response));
  }
  const offered = data.offer(call);
  try {
    const frames = new FrameWriter(await offered.connection, CopyFromGuestResponseSchema);
    await encodeDownload(request, (response) => frames.write(response));
    await frames.end();
  } finally {
    offered.withdraw();
  }
}

// A tree, or a file big enough to be worth a connection of its own. Only the choice of
// path depends on it: what is sent is decided by encodeDownload's own look at the root.
async function isBulk({ path, followLinks }: DownloadRequest): Promise<boolean> {
  try {
    const stats = await (followLinks ? stat(path) : lstat(path));
    return stats.isDirectory() || (stats.isFile() && stats.size >= DATA_CONNECTION_MIN_BYTES);
  } catch {
    return false;
  }
}
