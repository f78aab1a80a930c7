// Setting modification times as exactly as Node allows.
//
// Node's utimes/futimes/lutimes take seconds as a double, and libuv turns it back into a
// timespec. A double between 2^30 and 2^31 seconds (2004 to 2038) has a step of 2^-22 s,
// about 238 ns, so nanoseconds land within one step of the wanted value (two after
// 2038); whole seconds are kept exact. Node also replaces any negative time with "now",
// so instants before 1970 cannot be set at all and are refused as bad input. Exact
// nanoseconds and pre-1970 times would need utimensat() through a native addon.
import type { Timestamp } from "./file-metadata.js";

/** Largest seconds value a double carries exactly; later instants are refused as bad input. */
export const MAX_TIME_SECONDS = 2n ** 53n;

/** The seconds argument for fs.utimes/futimes/lutimes that reproduces `time` most closely. */
export function timeArgument(time: Timestamp): number {
  const seconds = Number(time.seconds);
  const value = seconds + time.nanos / 1e9;
  // Rounding to the nearest double can carry .999999999 into the next second; the
  // largest double below that second keeps the seconds right.
  return Math.trunc(value) > seconds ? largestBelow(seconds + 1) : value;
}

/** Now, as the seconds argument, for the access time (the host does not send one). */
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
