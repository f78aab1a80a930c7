// guest.proto is the contract, and limits.ts is what the code enforces: every limit the
// proto states, written NAME (value), must be the value limits.ts exports under NAME.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as limits from "../src/limits.js";

const proto = readFileSync(new URL("../../../proto/guest/guest.proto", import.meta.url), "utf8");
// The comments as one text, so that a NAME (value) may wrap from one line to the next.
const comments = proto
  .split("\n")
  .map((line) => (line.includes("//") ? line.slice(line.indexOf("//") + 2) : ""))
  .join(" ")
  .replace(/\s+/g, " ");

const UNIT: Record<string, number> = { "": 1, KiB: 1024, MiB: 1024 * 1024, GiB: 1024 * 1024 * 1024 };
const STATED = /\b([A-Z][A-Z0-9_]+) \((\d+)(?: (KiB|MiB|GiB))?\)/g;

function stated(): Map<string, number[]> {
  const values = new Map<string, number[]>();
  for (const [, name, number, unit] of comments.matchAll(STATED)) {
    values.set(name as string, [...(values.get(name as string) ?? []), Number(number) * (UNIT[unit ?? ""] as number)]);
  }
  return values;
}

describe("guest.proto states the limits of limits.ts", () => {
  it("every NAME (value) in the proto is limits.ts's NAME, with that value", () => {
    const numbers = limits as unknown as Record<string, unknown>;
    const found = stated();
    for (const [name, values] of found) {
      expect(Object.hasOwn(numbers, name), `${name} is not exported by limits.ts`).toBe(true);
      for (const value of values) expect(value, name).toBe(numbers[name]);
    }
    // The limits a peer must know to be accepted are all stated.
    for (const name of [
      "MAX_MESSAGE_BYTES",
      "CHUNK_SIZE",
      "SMALL_FILE_BYTES",
      "MAX_BATCH_BYTES",
      "MAX_BATCH_ENTRIES",
      "MAX_PATH_BYTES",
      "MAX_NAME_BYTES",
      "MAX_SYNTHETIC_FILE_BYTES",
      "EXEC_STDIN_WINDOW_BYTES",
      "DEFAULT_PORT",
    ]) {
      expect(found.has(name), `guest.proto does not state ${name}`).toBe(true);
    }
  });

  it("every size the proto names is one of those limits (no number of its own to drift)", () => {
    // Sizes outside NAME (value): only the facts about other peers are left.
    const bare = [...comments.matchAll(/(\S+) (\(?)(\d+ [KMG]iB)/g)]
      .filter(([, before, paren]) => !(paren === "(" && /^[A-Z][A-Z0-9_]+$/.test(before as string)))
      .map(([, , , size]) => size);
    expect(bare).toEqual(["32 KiB", "4 MiB"]);
  });
});
