// Download: a guest file or tree into a local path, over one CopyFromGuest stream.
//
// Messages are taken one at a time and the next is read only once the previous one is
// on disk, so a guest sending faster than the disk writes is held back by gRPC flow
// control instead of filling memory. What the guest sends is checked and written by the
// copy engine's TreeWriter with the DestinationPolicy (copy-local-writer.ts); this file
// runs the protocol around it: header, data..., end per entry, and a final `end` that
// must arrive.
//
// The request asks for batches: guestkit's agent then sends small files, directories
// and symlinks whole, many to a message. Each batched entry goes through the very same
// begin, write, end as one sent in three messages, so it is checked the same way; on
// top, a batch is refused beyond MAX_BATCH_ENTRIES entries or MAX_BATCH_BYTES of data,
// or with a file larger than SMALL_FILE_BYTES in it. An agent that does not know the
// request's flag answers in the original framing.
//
// A file the guest says changed while it read it (`end.changed`) is refused, or kept
// and listed when the caller accepts changing files; one it says shrank (a `skipped`
// with SIZE_MISMATCH for the file being received) is always refused: no copy of it
// exists. A transfer that ends without a single entry is a protocol error, not an empty
// success.
//
// On failure the entry being written is removed (it only ever existed under a temp
// name); entries completed before the failure stay where they are, and the error says
// the transfer is incomplete and how many there were.
import { realpath, stat } from "node:fs/promises";
import type { Socket } from "node:net";
import { basename, dirname, join, posix, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { TreeWriter } from "@guestkit/copy";
import {
  Capability,
  CopyFromGuestRequestSchema,
  type CopyFromGuestResponse,
  CopyFromGuestResponseSchema,
  cutText,
  DataConnectionError,
  ErrorCode,
  errnoOf,
  MAX_GUEST_CODE,
  MAX_GUEST_MESSAGE,
  MAX_GUEST_PATH,
  MAX_QUOTED_PATH,
  readFrames,
} from "@guestkit/protocol";
import { describeLocalError, errnoText } from "../guest-error.js";
import { askForDataConnection, ticketOf, untilQuietAfterCall } from "../transport/data-connection.js";
import type { GuestChannel } from "../transport/guest-connection.js";
import { abortedError, callError, dataConnectionError } from "./copy-call.js";
import { type DestinationSpec, type DestinationState, parseDestination, parseSource } from "./copy-destination.js";
import { CopyError } from "./copy-error.js";
import { copyErrorOf, DestinationPolicy } from "./copy-local-writer.js";
import {
  ACCEPT_HINT,
  type CopyOptions,
  type CopyResult,
  callMetadata,
  EntryList,
  notifyProgress,
  type SkippedEntry,
} from "./copy-types.js";

/** Options of copyFrom. */
export type CopyFromOptions = CopyOptions;

/**
 * Copies `guestPath` (absolute; a file, a symlink or a whole tree) out of the guest to
 * `localPath`, with the `docker cp` destination rules (see placeCopy). Nothing the
 * guest sends can write outside the destination: unsafe names, links and sizes fail the
 * transfer with a CopyError (UNSAFE_ENTRY, SIZE_MISMATCH, PROTOCOL). A file that changed
 * while the guest read it fails it with SOURCE_CHANGED, leaving what was under its name,
 * unless `acceptChangingFiles` (then it is kept as read and listed in `changed`); one
 * that shrank always does. A time the local file system cannot store (the kernel would
 * clamp it) fails it with LOCAL_IO, errno EINVAL. Setuid and setgid
 * bits are dropped unless `keepSetuid`; ownership is applied only with
 * `preserveOwnership`. Symlink targets must stay inside the copied tree (or, for a
 * single link, inside the directory that receives it): relative, with their `..` only
 * at the start.
 */
export async function copyFrom(
  channel: GuestChannel,
  guestPath: string,
  localPath: string,
  options: CopyFromOptions = {},
): Promise<CopyResult> {
  const { signal } = options;
  if (signal?.aborted) throw abortedError(signal);
  const source = parseSource(guestPath);
  if (!source.path.startsWith("/")) {
    throw new CopyError("source", `the guest path must be absolute: ${guestPath}`, { path: guestPath });
  }
  const local = await resolveDestination(parseDestination(localPath));
  const destination = new DestinationPolicy({
    source,
    baseName: posix.basename(source.path),
    destination: local.spec,
    destinationState: local.state,
    preserveOwnership: options.preserveOwnership === true,
    keepSetuid: options.keepSetuid === true,
  });
  const writer = new TreeWriter(destination);
  // The agent decides whether the transfer is worth a data connection (a tree, a big file).
  const asksForData = channel.has(Capability.DATA_CONNECTION);
  const metadata = callMetadata(channel, options.metadata);
  const call = channel.guest.copyFromGuest(
    create(CopyFromGuestRequestSchema, {
      path: source.path,
      followLinks: options.followLinks === true,
      batch: channel.has(Capability.COPY_BATCH),
    }),
    asksForData ? askForDataConnection(metadata) : metadata,
  );
  const ticket = asksForData ? ticketOf(call) : undefined;
  let dataSocket: Socket | undefined;
  const onAbort = () => {
    call.cancel();
    dataSocket?.destroy();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  let callEnded = false;
  // A status that came before the messages were read (while the ticket was awaited) is
  // not seen by reading them: it is kept here.
  let failedStatus: grpc.StatusObject | undefined;
  call.on("status", (status: grpc.StatusObject) => {
    callEnded = true;
    if (status.code !== 0) failedStatus = status;
    // A call that failed takes its data connection with it, and says why.
    if (status.code !== 0) dataSocket?.destroy(callError(status, "CopyFromGuest"));
  });
  // Whatever the call reports once this function is done with it.
  call.on("error", () => {});
  let succeeded = false;

  const skipped = new EntryList<SkippedEntry>();
  const changed = new EntryList<string>();
  let bytes = 0;
  let entries = 0;
  let currentPath = "";
  let partial = false;
  // Data of files the guest gave up on part-way: moved, but not written at the destination.
  let droppedBytes = 0;
  const progress = () => notifyProgress(options, { bytes, entries, path: currentPath });
  try {
    let messages: AsyncIterable<CopyFromGuestResponse> = call;
    const granted = await ticket;
    if (granted !== undefined && !callEnded) {
      dataSocket = await channel.openDataConnection(granted, signal);
      messages = untilQuietAfterCall(readFrames(dataSocket, CopyFromGuestResponseSchema), dataSocket, () => callEnded);
    }
    let finished = false;
    for await (const message of messages) {
      if (signal?.aborted) throw abortedError(signal);
      const response = message.response;
      if (response.case === "header") {
        currentPath = response.value.path;
        await writer.begin(response.value);
      } else if (response.case === "data") {
        await writer.write(response.value);
        bytes += response.value.byteLength;
        progress();
      } else if (response.case === "end") {
        if (response.value.final && !destination.hasRoot) {
          throw new CopyError("protocol", "protocol error: the guest ended the transfer without sending any entry");
        }
        // A bare final `end` closes a transfer whose last entry came in a batch.
        if (writer.hasOpenEntry || !response.value.final) {
          const changedPath = response.value.changed ? writer.openFilePath : undefined;
          if (changedPath !== undefined) {
            if (options.acceptChangingFiles !== true) throw changedError(changedPath);
            changed.add(changedPath);
          }
          await writer.end();
          entries = writer.entriesWritten;
          progress();
        }
        if (response.value.final) {
          partial = response.value.partial;
          finished = true;
          break;
        }
      } else if (response.case === "batch") {
        const batched = response.value.entries;
        await writer.batch(batched);
        for (const { data } of batched) bytes += data.byteLength;
        currentPath = batched[batched.length - 1]?.header?.path ?? currentPath;
        entries = writer.entriesWritten;
        progress();
      } else if (response.case === "skipped") {
        const { path, reason, code } = response.value;
        if (code === ErrorCode.SIZE_MISMATCH && path === writer.openFilePath) {
          throw new CopyError(
            "source-changed",
            `guest: ${JSON.stringify(cutText(path, MAX_QUOTED_PATH))} shrank while it was read (${cutText(reason, MAX_GUEST_MESSAGE)}): no complete copy of it exists`,
            { path: cutText(path, MAX_GUEST_PATH), guestCode: cutText(code, MAX_GUEST_CODE) },
          );
        }
        skipped.add({
          path: cutText(path, MAX_GUEST_PATH),
          reason: cutText(reason, MAX_GUEST_MESSAGE),
          code: cutText(code, MAX_GUEST_CODE),
        });
        // A skip of the file being received (a read failed part-way): drop it and go on.
        droppedBytes += writer.dropFile(path) ?? 0;
      } else if (response.case === "error") {
        const { message: text, path, code } = response.value;
        const errorPath = cutText(path, MAX_GUEST_PATH) || guestPath;
        // An errno in the system's words with the path; other failures as the guest said them.
        // (Only for what is about the path itself; otherwise the guest's words say more.)
        const known = PATH_ERRNOS.has(code) ? errnoText(code) : undefined;
        const what =
          known !== undefined
            ? `${known}: guest:${errorPath}`
            : `guest: ${cutText(text, MAX_GUEST_MESSAGE) || "copy failed"}`;
        throw new CopyError("source", what, {
          path: errorPath,
          ...(code === "" ? {} : { guestCode: cutText(code, MAX_GUEST_CODE) }),
        });
      } else {
        throw new CopyError("protocol", "protocol error: an empty or unknown message from the guest");
      }
    }
    if (signal?.aborted) throw abortedError(signal);
    if (!finished) {
      if (failedStatus) throw callError(failedStatus, "CopyFromGuest");
      throw new CopyError(
        "protocol",
        "the guest closed the stream without the final `end`: the transfer is incomplete",
      );
    }
    await writer.finish();
    if (writer.entriesWritten !== entries) {
      // The last commits finished after the final `end`: report the totals once more.
      entries = writer.entriesWritten;
      progress();
    }
    succeeded = true;
  } catch (error) {
    await writer.abort();
    const cause = error instanceof DataConnectionError ? dataConnectionError(error) : copyErrorOf(error);
    throw incomplete(cause, signal, writer.entriesWritten, bytes);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    dataSocket?.destroy();
    if (succeeded) settleFinishedCall(call, () => callEnded);
    // On failure this stops the guest sending.
    else call.cancel();
  }
  return {
    bytes: bytes - droppedBytes,
    entries,
    skipped: skipped.listed,
    skippedCount: skipped.count,
    partial: partial || skipped.count > 0,
    changed: changed.listed,
    changedCount: changed.count,
  };
}

function changedError(path: string): CopyError {
  return new CopyError(
    "source-changed",
    `guest: ${JSON.stringify(cutText(path, MAX_QUOTED_PATH))} changed while it was read (its size or times differed after the read), so what arrived may mix old and new content; it was not written ${ACCEPT_HINT}`,
    { path: cutText(path, MAX_GUEST_PATH) },
  );
}

/**
 * After the final `end` the call's status is on its way. Cancelling then would send an
 * RST_STREAM whenever it has not arrived yet, and servers count those: nghttp2 and
 * grpc-go close a connection that resets streams faster than a rapid-reset guard allows
 * (about 1,000 at once, then 33 a second), which a host copying many trees hit. So a
 * finished call is cancelled only if its status does not follow within SETTLE_MS (a
 * guest that keeps the stream open after `end`).
 */
function settleFinishedCall(call: grpc.ClientReadableStream<CopyFromGuestResponse>, ended: () => boolean): void {
  if (ended()) return;
  const timer = setTimeout(() => call.cancel(), SETTLE_MS);
  timer.unref();
  call.once("status", () => clearTimeout(timer));
}

const SETTLE_MS = 1000;

/** The local destination with its path made absolute and resolved through links the user named. */
async function resolveDestination(spec: DestinationSpec): Promise<{ spec: DestinationSpec; state: DestinationState }> {
  const absolute = resolve(spec.path);
  let real: string;
  try {
    real = await realpath(absolute);
  } catch (error) {
    if (errnoOf(error) !== "ENOENT") throw destinationError(absolute, error);
    let parent: string;
    try {
      parent = await realpath(dirname(absolute));
    } catch (parentError) {
      throw destinationError(dirname(absolute), parentError);
    }
    return {
      spec: { path: join(parent, basename(absolute)), trailingSlash: spec.trailingSlash },
      state: { exists: false, isDir: false },
    };
  }
  const stats = await stat(real);
  if (!stats.isDirectory() && !stats.isFile()) {
    throw new CopyError("destination", `${absolute} is neither a regular file nor a directory`, { path: absolute });
  }
  return {
    spec: { path: real, trailingSlash: spec.trailingSlash },
    state: { exists: true, isDir: stats.isDirectory() },
  };
}

function destinationError(path: string, error: unknown): CopyError {
  const errno = errnoOf(error);
  const text = errno === "ENOENT" ? "does not exist" : describeLocalError(error);
  return new CopyError("destination", `destination ${path}: ${text}`, {
    path,
    ...(errno === "" ? {} : { errno }),
    cause: error,
  });
}

/** The error a failed transfer rejects with, saying how much of it landed. */
function incomplete(error: unknown, signal: AbortSignal | undefined, entries: number, bytes: number): CopyError {
  const progress = { entriesCompleted: entries, bytesCompleted: bytes };
  if (signal?.aborted) return abortedError(signal, progress);
  const base = error instanceof CopyError ? error : callError(error, "CopyFromGuest");
  const note =
    entries > 0
      ? ` (the transfer is incomplete: ${entries} entries completed before the failure were left in place)`
      : "";
  return new CopyError(base.reason, `${base.message}${note}`, {
    code: base.code,
    ...(base.path === undefined ? {} : { path: base.path }),
    ...(base.errno === undefined ? {} : { errno: base.errno }),
    ...(base.guestCode === undefined ? {} : { guestCode: base.guestCode }),
    ...progress,
    cause: base.cause ?? error,
  });
}

// Errno names that say what is wrong with a path as well as the system's words do.
const PATH_ERRNOS: ReadonlySet<string> = new Set(["ENOENT", "ENOTDIR", "EACCES", "EPERM", "ELOOP", "ENAMETOOLONG"]);
