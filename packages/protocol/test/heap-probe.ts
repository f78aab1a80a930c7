// Runs a snippet in a fresh Node process (testkit's runHeapProbe) and returns what it
// reports, for the tests that measure what is really kept. The snippet imports the built package as `protocol` and has `await live()`: the bytes on
// the JS heap and in Buffers after full GCs, a few milliseconds apart (V8 frees the
// memory of dead Buffers on a background thread, after the GC that found them); it ends
// with `report(value)`.
import { fileURLToPath } from "node:url";
import { runHeapProbe } from "@guestkit/testkit";

const PACKAGE = fileURLToPath(new URL("../dist/index.js", import.meta.url));

/** Runs `body` as described above and resolves with the value it reported. */
export async function inFreshHeap<T>(body: string): Promise<T> {
  const script = `
    import * as protocol from ${JSON.stringify(PACKAGE)};
    const live = async () => {
      for (let round = 0; round < 3; round++) {
        globalThis.gc();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const usage = process.memoryUsage();
      return usage.heapUsed + usage.external;
    };
    const report = (value) => process.stdout.write(JSON.stringify(value));
    ${body}
  `;
  return runHeapProbe<T>(["--input-type=module", "-e", script]);
}
