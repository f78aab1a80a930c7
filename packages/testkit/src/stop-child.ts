// Ending a helper process that owns a temp dir (an agent, a hostile agent), the same
// way on every path out: a failed start-up and stop().
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

/**
 * Signals `child` unless it has already exited, waits for `exited`, then removes `dir`.
 * The dir goes only once the process is gone, as it may still be writing there (its
 * socket, its files); resolves to what `exited` resolved to.
 */
export async function stopChild<T>(
  child: ChildProcess,
  exited: Promise<T>,
  signal: NodeJS.Signals,
  dir: string,
): Promise<T> {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  const result = await exited;
  rmSync(dir, { recursive: true, force: true });
  return result;
}
