import { describe, expect, it } from "vitest";
import { cutText } from "../src/cut-text.js";
import { inFreshHeap } from "./heap-probe.js";

describe("cutText", () => {
  it("keeps the start (or the end) up to the bound, and a shorter text whole", () => {
    expect(cutText("abcdef", 4)).toBe("abcd");
    expect(cutText("abcdef", 4, "end")).toBe("cdef");
    expect(cutText("abc", 4)).toBe("abc");
    expect(cutText("abc", 4, "end")).toBe("abc");
    expect(cutText("", 4)).toBe("");
    expect(cutText("abc", 0)).toBe("");
    expect(cutText("é€😀 ünïcødé", 100)).toBe("é€😀 ünïcødé");
  });

  it("never splits a surrogate pair: the character at the cut is left out whole", () => {
    const text = "ab😀cd"; // the emoji is two code units, at 2 and 3
    expect(cutText(text, 3)).toBe("ab");
    expect(cutText(text, 4)).toBe("ab😀");
    expect(cutText(text, 3, "end")).toBe("cd");
    expect(cutText(text, 4, "end")).toBe("😀cd");
  });

  it("returns a string that does not keep its source alive (slice does)", async () => {
    // 200 distinct sources of 512 KiB (100 MiB), cut to 4096 characters each, every cut
    // kept: what stays live after a full GC is the cuts, or the sources with them.
    const growth = (cut: string) =>
      inFreshHeap<number>(`
        const before = await live();
        const kept = [];
        for (let i = 0; i < 200; i++) {
          const source = Buffer.alloc(512 * 1024, 97 + (i % 26)).toString("latin1") + i;
          kept.push(${cut});
        }
        report(((await live()) - before) / (1024 * 1024));
        if (kept.length !== 200) throw new Error("unreachable");
      `);
    const sliced = await growth("source.slice(0, 4096)");
    const cut = await growth("protocol.cutText(source, 4096)");
    // The measure sees retention: slices keep all 100 MiB.
    expect(sliced).toBeGreaterThan(90);
    // 200 cuts of 4 KiB: under 1 MiB, plus noise.
    expect(cut).toBeLessThan(4);
  }, 60_000);
});
