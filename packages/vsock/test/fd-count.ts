// Open file descriptors of this process, to prove that closing frees them.
import { readdirSync } from "node:fs";

/** How many fds this process has open right now. */
export function openFdCount(): number {
  return readdirSync("/proc/self/fd").length;
}
