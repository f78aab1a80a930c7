// `guestctl cp SRC DST`: one side written `guest:PATH`, the other a local path, with
// `docker cp` semantics (the library's copyTo/copyFrom implement them). Quiet on
// success; skipped entries (FIFOs, sockets, devices, unreadable files) are listed on
// stderr as tar lists what it left out, and the copy still succeeds; so are files that
// changed while they were read, kept as read with --accept-changing-files (without it
// the copy fails, as tar's "file changed as we read it" makes it exit 1); --json prints
// what was done.
import { lstat, stat } from "node:fs/promises";
import type { WriteStream } from "node:tty";
import type { CopyOptions, CopyResult } from "../copy/copy-types.js";
import { createGuestClient, type GuestClient } from "../guest-client.js";
import { type ConnectionFlags, clientOptions } from "./connection-flags.js";
import { printable, usageError } from "./exit-status.js";
import { guestPathOf } from "./guest-path.js";
import { ProgressBar } from "./progress-bar.js";

/** The options of `cp` as commander parses them. */
export interface CpFlags extends ConnectionFlags {
  archive?: boolean;
  followLink?: boolean;
  acceptChangingFiles?: boolean;
  json?: boolean;
}

// Skipped entries named one by one on stderr; the rest are counted.
const SKIPPED_SHOWN = 20;

/** Copies SRC to DST; resolves with the exit status. */
export async function cpCommand(source: string, destination: string, flags: CpFlags): Promise<number> {
  const guestSource = guestPathOf(source);
  const guestDestination = guestPathOf(destination);
  if ((guestSource === undefined) === (guestDestination === undefined)) {
    throw usageError("exactly one of SRC and DST must be a guest path, written guest:PATH");
  }
  for (const operand of [source, destination]) {
    if (operand === "-") throw usageError("cp does not read or write tar streams: '-' is not supported");
  }
  const direction = guestSource !== undefined ? "from-guest" : "to-guest";
  const guestPath = (guestSource ?? guestDestination) as string;
  if (!guestPath.startsWith("/")) throw usageError(`the guest path must be absolute: guest:${printable(guestPath)}`);
  const client = createGuestClient(clientOptions(flags));
  const options: CopyOptions = {
    followLinks: flags.followLink === true,
    preserveOwnership: flags.archive === true,
    // As cp -a: with the owner kept exactly, setuid/setgid mean what they meant at the
    // source; without it they would be granted by the receiver's user (root), so the
    // library drops them.
    keepSetuid: flags.archive === true,
    acceptChangingFiles: flags.acceptChangingFiles === true,
  };
  let bar: ProgressBar | undefined;
  const stderr = process.stderr as WriteStream;
  if (stderr.isTTY) {
    const totalBytes = await sourceSize(client, direction === "from-guest" ? guestPath : source, direction, options);
    bar = new ProgressBar(stderr, {
      label: printable(source),
      ...(totalBytes !== undefined ? { totalBytes } : {}),
    });
    const shown = bar;
    options.onProgress = (progress) => shown.update(progress);
  }
  let result: CopyResult;
  try {
    result =
      direction === "to-guest"
        ? await client.copyTo(source, guestPath, options)
        : await client.copyFrom(guestPath, destination, options);
    bar?.finish(true);
  } catch (error) {
    bar?.finish(false);
    throw error;
  } finally {
    await client.close();
  }
  reportChanged(result);
  reportSkipped(result);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ source, destination, direction, ...result })}\n`);
  }
  return 0;
}

// The size of a single-file source, for the percentage; undefined for a tree or when it
// cannot be known cheaply (the copy itself then reports the real problem).
async function sourceSize(
  client: GuestClient,
  path: string,
  direction: "to-guest" | "from-guest",
  options: CopyOptions,
): Promise<number | undefined> {
  try {
    if (direction === "to-guest") {
      const info = options.followLinks ? await stat(path) : await lstat(path);
      return info.isFile() ? info.size : undefined;
    }
    const info = await client.stat(path, { followLinks: options.followLinks === true });
    return info.exists && info.type === "file" ? info.size : undefined;
  } catch {
    return undefined;
  }
}

function reportChanged(result: CopyResult): void {
  for (const path of result.changed.slice(0, SKIPPED_SHOWN)) {
    process.stderr.write(`guestctl: warning: ${printable(path)} changed while it was read; copied as read\n`);
  }
  const rest = result.changedCount - Math.min(result.changed.length, SKIPPED_SHOWN);
  if (rest > 0) {
    process.stderr.write(`guestctl: warning: ${rest} more ${rest === 1 ? "file" : "files"} changed while read\n`);
  }
}

function reportSkipped(result: CopyResult): void {
  if (result.skippedCount === 0) return;
  for (const entry of result.skipped.slice(0, SKIPPED_SHOWN)) {
    process.stderr.write(`guestctl: skipped ${printable(entry.path)}: ${printable(entry.reason)}\n`);
  }
  const rest = result.skippedCount - Math.min(result.skipped.length, SKIPPED_SHOWN);
  if (rest > 0) process.stderr.write(`guestctl: skipped ${rest} more ${rest === 1 ? "entry" : "entries"}\n`);
  const count = result.skippedCount === 1 ? "1 entry was" : `${result.skippedCount} entries were`;
  process.stderr.write(`guestctl: warning: ${count} left out; the copy is partial\n`);
}
