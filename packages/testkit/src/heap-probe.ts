// Measuring what a piece of code really keeps: it runs in a Node process of its own with
// --expose-gc, because only a full GC tells live memory from garbage and only a fresh
// process has nothing else on its heap. The child reports its figures as one JSON value,
// the last line of its stdout.
import { spawn } from "node:child_process";

/**
 * Runs Node with --expose-gc and `args` (a script path and its arguments, or
 * `--input-type=module -e SOURCE`) and resolves with the JSON value on the last line of
 * its stdout. Rejects, with its stderr, if it exits with anything but 0.
 */
export async function runHeapProbe<T>(args: readonly string[]): Promise<T> {
  const child = spawn(process.execPath, ["--expose-gc", ...args], { stdio: ["ignore", "pipe", "pipe"] });
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
  return JSON.parse(stdout.trim().split("\n").pop() ?? "null") as T;
}
