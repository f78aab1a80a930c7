// The line the agent logs at start saying which native addons it runs with. Each is
// optional and the agent works without it, more slowly or with less: without it a
// user would only find out from a failed TTY, a refused vsock listener or a slow exec.

import { posixSpawnFallbackReason } from "./exec/process-launch.js";
import { ptyNative } from "./exec/process-pty-native.js";
import { importOptional } from "./optional-package.js";

/** "addons: node-pty (TTYs), @guestkit/posix-spawn (...), ...", with the reason for each one missing. */
export async function addonReport(): Promise<string> {
  const used: string[] = [];
  const missing: string[] = [];
  try {
    ptyNative();
    used.push("node-pty (TTYs)");
  } catch (error) {
    missing.push(`node-pty, so no TTYs: ${(error as Error).message}`);
  }
  if (posixSpawnFallbackReason === undefined) used.push("@guestkit/posix-spawn (commands start without fork)");
  else missing.push(`@guestkit/posix-spawn: ${posixSpawnFallbackReason}`);
  const vsock = await importOptional("@guestkit/vsock", () => import("@guestkit/vsock"));
  const vsockProblem = "module" in vsock ? vsock.module.vsockUnavailableReason() : vsock.reason;
  if (vsockProblem === undefined) used.push("@guestkit/vsock (vsock listeners)");
  else missing.push(`@guestkit/vsock: ${vsockProblem}`);
  return [
    `addons: ${used.length > 0 ? used.join(", ") : "none"}`,
    ...(missing.length > 0 ? [`; without ${missing.join("; without ")}`] : []),
  ].join("");
}
