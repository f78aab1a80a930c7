// Time conversion: exact seconds, nanoseconds as close as a double carries, never a
// carry into the next second, and the refusals both sides apply.
import { describe, expect, it } from "vitest";
import { checkTimeKept, splitNanoseconds, timeArgument, timeMayBeClamped, timeProblem } from "../src/index.js";

describe("timestamps", () => {
  it("keeps whole seconds exact and never rounds .999999999 into the next second", () => {
    expect(timeArgument({ seconds: 1_700_000_000n, nanos: 0 })).toBe(1_700_000_000);
    expect(Math.trunc(timeArgument({ seconds: 1_700_000_000n, nanos: 999_999_999 }))).toBe(1_700_000_000);
    const near = timeArgument({ seconds: 1_700_000_000n, nanos: 123_456_789 });
    // Within one step of a double at this size (2^-22 s, about 238 ns).
    expect(Math.abs((near - 1_700_000_000) * 1e9 - 123_456_789)).toBeLessThan(250);
  });

  it("refuses what cannot be set, on either side", () => {
    expect(timeProblem({ seconds: 1n, nanos: 1_000_000_000 })).toMatch(/not below one second/);
    expect(timeProblem({ seconds: -1n, nanos: 0 })).toMatch(/before 1970/);
    expect(timeProblem({ seconds: 2n ** 54n, nanos: 0 })).toMatch(/out of range/);
    expect(timeProblem({ seconds: 0n, nanos: 999_999_999 })).toBeUndefined();
  });

  it("reads back only times some file system may clamp, and refuses a clamped one", () => {
    expect(timeMayBeClamped({ seconds: 1_700_000_000n, nanos: 0 })).toBe(false);
    expect(timeMayBeClamped({ seconds: 0n, nanos: 0 })).toBe(true);
    expect(timeMayBeClamped({ seconds: 253_402_300_800n, nanos: 0 })).toBe(true);
    expect(() => checkTimeKept({ seconds: 10n, nanos: 0 }, 11_000_000_000n)).not.toThrow();
    expect(() => checkTimeKept({ seconds: 253_402_300_800n, nanos: 0 }, 15_032_385_535_000_000_000n)).toThrow(
      /mtime 253402300800 \(\+010000-01-01T00:00:00\.000Z\) is outside what the file system can store: it would be 15032385535/,
    );
  });

  it("splits nanoseconds as a timespec does, also before 1970", () => {
    expect(splitNanoseconds(1_500_000_000_123_456_789n)).toEqual({ seconds: 1_500_000_000n, nanos: 123_456_789 });
    expect(splitNanoseconds(-1n)).toEqual({ seconds: -1n, nanos: 999_999_999 });
  });
});
