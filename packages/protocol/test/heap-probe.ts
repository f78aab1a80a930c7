// Runs a snippet in a Node process of its own with --expose-gc and returns what it
// prints, for the tests that measure what is really kept: only a full GC tells live
// memory from garbage, and only a fresh process has nothing else on its heap. The
// snippet imports the built package as `protocol` and has `await live()`: the bytes on
// the JS heap and in Buffers after full GCs, a few milliseconds apart (V8 frees the
// memory of dead Buffers on a background thread, after the GC that found them); it ends
// with `report(value)`.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

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
  const child = spawn(process.execPath, ["--expose-gc", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
  });
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  if (code !== 0) throw new Error(`the heap probe exited ${code}: ${stderr}`);
  return JSON.parse(stdout) as T;
}
