// Temp directories for the sending side's tests, removed after each test.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import type { WalkItem } from "../src/tree-walk.js";

const made: string[] = [];

afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp directory, removed after the test. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-copy-send-"));
  made.push(dir);
  return dir;
}

/** Descriptors this process has open, to see that a walk or a read left none behind. */
export function openDescriptors(): number {
  return readdirSync("/proc/self/fd").length;
}

/** Everything an iterable yields. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

/** The walk's items by relative path. */
export function byPath(items: WalkItem[]): Map<string, WalkItem> {
  return new Map(items.map((item) => [item.relativePath, item]));
}
