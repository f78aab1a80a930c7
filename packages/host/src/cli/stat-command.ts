// `guestctl stat`: one guest path described, for people or (--json) for programs.
// A missing path is exit status 1 with `"exists": false` in JSON, as stat(1) fails.
import { createGuestClient } from "../guest-client.js";
import type { GuestStat } from "../stat.js";
import { type ConnectionFlags, clientOptions } from "./connection-flags.js";
import { EXIT_FAILURE, printable, usageError } from "./exit-status.js";
import { GUEST_PREFIX } from "./guest-path.js";

/** The options of `stat` as commander parses them. */
export interface StatFlags extends ConnectionFlags {
  dereference?: boolean;
  json?: boolean;
}

/** Describes `path` (absolute; `guest:` in front is allowed) on stdout; resolves with the exit status. */
export async function statCommand(path: string, flags: StatFlags): Promise<number> {
  const guestPath = path.startsWith(GUEST_PREFIX) ? path.slice(GUEST_PREFIX.length) : path;
  if (!guestPath.startsWith("/")) throw usageError(`the guest path must be absolute: ${printable(path)}`);
  const client = createGuestClient(clientOptions(flags));
  try {
    const stat = await client.stat(guestPath, { followLinks: flags.dereference === true });
    process.stdout.write(flags.json ? `${JSON.stringify(statJson(guestPath, stat))}\n` : statText(guestPath, stat));
    if (!stat.exists && !flags.json)
      process.stderr.write(`guestctl: no such file or directory: guest:${printable(guestPath)}\n`);
    return stat.exists ? 0 : EXIT_FAILURE;
  } finally {
    await client.close();
  }
}

/** The JSON form: numbers as numbers, the mode also in octal, mtime in ISO 8601 and exact nanoseconds. */
export function statJson(path: string, stat: GuestStat): Record<string, unknown> {
  if (!stat.exists) return { path, exists: false };
  return {
    path,
    exists: true,
    type: stat.type,
    mode: stat.mode,
    modeOctal: octal(stat.mode),
    size: stat.size,
    uid: stat.uid,
    gid: stat.gid,
    mtime: stat.mtime?.toISOString() ?? null,
    mtimeNs: stat.mtimeNs === null ? null : stat.mtimeNs.toString(),
    linkTarget: stat.linkTarget,
  };
}

/** The human form: one `Name: value` line per field, guest text made safe for the terminal. */
export function statText(path: string, stat: GuestStat): string {
  if (!stat.exists) return "";
  const lines: [string, string][] = [
    ["Path", printable(path)],
    ["Type", stat.type],
    ["Mode", `${octal(stat.mode)} (${permissionString(stat.type, stat.mode)})`],
    ["Size", String(stat.size)],
  ];
  if (stat.uid !== null) lines.push(["Owner", `${stat.uid}:${stat.gid ?? "?"}`]);
  if (stat.mtime !== null) lines.push(["Modified", isoWithNanos(stat.mtimeNs ?? 0n)]);
  if (stat.linkTarget !== null) lines.push(["Link", printable(stat.linkTarget)]);
  const width = Math.max(...lines.map(([name]) => name.length));
  return lines.map(([name, value]) => `${`${name}:`.padEnd(width + 1)} ${value}\n`).join("");
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}

const TYPE_LETTER: Record<string, string> = {
  directory: "d",
  symlink: "l",
  fifo: "p",
  socket: "s",
  "char-device": "c",
  "block-device": "b",
};

// "drwxr-sr-t" as ls shows it, setuid/setgid/sticky included.
function permissionString(type: string, mode: number): string {
  const bit = (mask: number, letter: string) => (mode & mask ? letter : "-");
  const special = (exec: number, flag: number, set: string, unset: string) =>
    mode & flag ? (mode & exec ? set : unset) : bit(exec, "x");
  return [
    TYPE_LETTER[type] ?? "-",
    bit(0o400, "r"),
    bit(0o200, "w"),
    special(0o100, 0o4000, "s", "S"),
    bit(0o40, "r"),
    bit(0o20, "w"),
    special(0o10, 0o2000, "s", "S"),
    bit(0o4, "r"),
    bit(0o2, "w"),
    special(0o1, 0o1000, "t", "T"),
  ].join("");
}

// 2024-05-01T12:00:00.123456789Z: Date keeps milliseconds only.
function isoWithNanos(ns: bigint): string {
  // Floored, so that times before 1970 keep a positive fraction.
  let seconds = ns / 1_000_000_000n;
  let nanos = ns % 1_000_000_000n;
  if (nanos < 0n) {
    seconds -= 1n;
    nanos += 1_000_000_000n;
  }
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${base}.${nanos.toString().padStart(9, "0")}Z`;
}
