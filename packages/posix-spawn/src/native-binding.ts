// The one loader of the native addon. Whether posix_spawn can be used is decided here,
// once; callers fall back to child_process when it cannot, so the reason is kept for
// their logs rather than thrown.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";

/** The addon's functions (native/posix_spawn.c). Each returns a negative errno on failure. */
export interface PosixSpawnNative {
  /**
   * Starts `file` (uid and gid -1: the caller's; cgroup "": the caller's; `terminal`:
   * the three fds are a terminal's slave side, to be its controlling terminal);
   * onExit(code, signal) runs once it has exited and been reaped. Returns the pid, or
   * what failed.
   */
  spawn(
    file: string,
    argv: readonly string[],
    envp: readonly string[],
    cwd: string,
    stdin: number,
    stdout: number,
    stderr: number,
    uid: number,
    gid: number,
    cgroup: string,
    terminal: boolean,
    onExit: (code: number, signal: number) => void,
  ): number | { errno: number; step: string };
  /** A close-on-exec pipe: [readFd, writeFd]. */
  pipe(): [number, number] | number;
  closeFd(fd: number): number;
  /** 0 when the kernel has pidfds (Linux 5.3). */
  supported(): number;
  /** INTERFACE_VERSION in posix_spawn.c: which arguments these functions take. */
  readonly interfaceVersion?: number;
}

// The native/posix_spawn.c this code calls.
const INTERFACE_VERSION = 3;

const ADDON_PATH = "../build/Release/posix_spawn.node";

let loaded: { native: PosixSpawnNative } | { reason: string } | undefined;

/** The addon, or the reason it cannot be used here. */
export function loadNative(): { native: PosixSpawnNative } | { reason: string } {
  loaded ??= load();
  return loaded;
}

function load(): { native: PosixSpawnNative } | { reason: string } {
  if (process.platform !== "linux") return { reason: `pidfds are Linux only (this is ${process.platform})` };
  const require = createRequire(import.meta.url);
  if (!existsSync(new URL(ADDON_PATH, import.meta.url))) {
    const reasonFile = new URL("../build/unavailable.txt", import.meta.url);
    const why = existsSync(reasonFile) ? readFileSync(reasonFile, "utf8").trim() : "it was never built";
    return { reason: `the @guestkit/posix-spawn addon is not built (${why})` };
  }
  let native: PosixSpawnNative;
  try {
    native = require(ADDON_PATH) as PosixSpawnNative;
  } catch (error) {
    return { reason: `the @guestkit/posix-spawn addon failed to load: ${(error as Error).message}` };
  }
  if (native.interfaceVersion !== INTERFACE_VERSION) {
    return {
      reason: "the @guestkit/posix-spawn addon is an older build than its code (its install script rebuilds it)",
    };
  }
  const support = native.supported();
  if (support < 0) return { reason: `this kernel has no pidfd_open (errno ${-support}); Linux 5.4 or later is needed` };
  return { native };
}
