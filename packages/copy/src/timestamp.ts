// Times as the protocol carries them, and setting them as exactly as Node allows.
//
// Node's utimes/futimes/lutimes take seconds as a double, and libuv turns it back into a
// timespec. A double between 2^30 and 2^31 seconds (2004 to 2038) has a step of 2^-22 s,
// about 238 ns, so nanoseconds land within one step of the wanted value (two after
// 2038); whole seconds are kept exact. Node replaces a negative number with "now", so
// instants before 1970 are refused as bad input (timeProblem) on both sides. Exact
// nanoseconds would need utimensat() through a native addon.
//
// The kernel clamps a time past what the file system stores (ext4 and tmpfs: 2446-05-10;
// ext4 with small inodes and XFS without bigtime: 2038) without an error, so a copy
// would report success for a time it did not apply. Such a time is read back after it
// is set (checkTimeKept) and the entry refused when it was not kept: most likely the time
// was bogus to begin with, and an error names it, where a silently different time would
// be found much later, if ever.

/** A point in time as the protocol carries it: unix seconds plus 0..999,999,999 nanoseconds. */
export interface Timestamp {
  seconds: bigint;
  nanos: number;
}

/** Largest seconds value a double carries exactly; later instants are refused as bad input. */
export const MAX_TIME_SECONDS = 2n ** 53n;

/** Why a time from the wire cannot be set, or undefined when it can. */
export function timeProblem(time: Timestamp): string | undefined {
  if (time.nanos >= 1_000_000_000) return `mtime_nanos ${time.nanos} is not below one second`;
  if (time.seconds < 0n) return `mtime ${time.seconds} is before 1970, which cannot be set from here`;
  if (time.seconds > MAX_TIME_SECONDS) return `mtime ${time.seconds} is out of range`;
  return undefined;
}

/** The seconds argument for fs.utimes/futimes/lutimes that reproduces `time` most closely. */
export function timeArgument(time: Timestamp): number {
  const seconds = Number(time.seconds);
  const value = seconds + time.nanos / 1e9;
  // Rounding to the nearest double can carry .999999999 into the next second; the
  // largest double below that second keeps the seconds right.
  return Math.trunc(value) > seconds ? largestBelow(seconds + 1) : value;
}

/** Now, as the seconds argument, for the access time (no side sends one). */
export function nowArgument(): number {
  return Date.now() / 1000;
}

const scratch = new DataView(new ArrayBuffer(8));

// The adjacent smaller double, for positive finite values.
function largestBelow(value: number): number {
  scratch.setFloat64(0, value);
  scratch.setBigUint64(0, scratch.getBigUint64(0) - 1n);
  return scratch.getFloat64(0);
}

// FAT keeps even seconds, the coarsest modification times of a Linux file system; any
// file system keeps a time within that of what was asked, unless it clamped it.
const KEPT_WITHIN_NS = 2_000_000_000n;

// Every Linux file system stores the times from 1980 (where FAT's range starts) to 2038
// (where 32-bit ones end: ext4 with small inodes, XFS without bigtime), a day of margin
// each side for FAT's local time. Nearly every file's time is in there, and reading it
// back would cost a stat per file of a tree.
const SURELY_KEPT_FROM = 315_619_200n; // 1980-01-02
const SURELY_KEPT_UNTIL = 2_147_397_247n; // 2038-01-18

/** Whether `time` may be clamped by some file system, so checkTimeKept must look. */
export function timeMayBeClamped(time: Timestamp): boolean {
  return time.seconds < SURELY_KEPT_FROM || time.seconds >= SURELY_KEPT_UNTIL;
}

/**
 * Throws (code EINVAL) when the file system did not keep `asked`: `keptNs` (the mtimeNs
 * of a stat after setting it, taken only when timeMayBeClamped) is further from it than
 * any file system's rounding.
 */
export function checkTimeKept(asked: Timestamp, keptNs: bigint): void {
  const askedNs = asked.seconds * 1_000_000_000n + BigInt(asked.nanos);
  const difference = keptNs > askedNs ? keptNs - askedNs : askedNs - keptNs;
  if (difference < KEPT_WITHIN_NS) return;
  throw Object.assign(
    new Error(
      `mtime ${asked.seconds} (${describeSeconds(asked.seconds)}) is outside what the file system can store: it would be ${keptNs / 1_000_000_000n} (${describeSeconds(keptNs / 1_000_000_000n)})`,
    ),
    { code: "EINVAL" },
  );
}

// An ISO date where Date can show it (up to the year 275760), else the seconds alone.
function describeSeconds(seconds: bigint): string {
  const date = new Date(Number(seconds) * 1000);
  return Number.isNaN(date.getTime()) ? `${seconds} s after 1970` : date.toISOString();
}

const NANOS_PER_SECOND = 1_000_000_000n;

/**
 * Splits a nanosecond timestamp (BigIntStats.mtimeNs) into seconds and nanoseconds.
 * Before 1970 the seconds round down so that nanos stay non-negative, as in a timespec.
 */
export function splitNanoseconds(nanoseconds: bigint): Timestamp {
  let seconds = nanoseconds / NANOS_PER_SECOND;
  let nanos = nanoseconds % NANOS_PER_SECOND;
  if (nanos < 0n) {
    nanos += NANOS_PER_SECOND;
    seconds -= 1n;
  }
  return { seconds, nanos: Number(nanos) };
}
