// Whether this system can do vsock at all, for callers that want to decide up front.
import { existsSync } from "node:fs";
import { loadNative } from "./native-binding.js";
import { unavailableError } from "./vsock-address.js";
import { errnoError } from "./vsock-error.js";

/** Why vsock cannot be used here, or undefined when the addon is loaded and /dev/vsock exists. */
export function vsockUnavailableReason(): string | undefined {
  const loaded = loadNative();
  if (!("native" in loaded)) return loaded.reason;
  if (!existsSync("/dev/vsock")) return "there is no /dev/vsock (load the vsock kernel module)";
  return undefined;
}

/**
 * This machine's own CID (from /dev/vsock). Tests use it to make sure they never dial
 * their own machine. Throws a VsockError when it cannot be read.
 */
export function localCid(): number {
  const loaded = loadNative();
  if (!("native" in loaded)) throw unavailableError(loaded.reason, "ioctl");
  const cid = loaded.native.localCid();
  if (cid < 0) throw errnoError(cid, "ioctl", "cannot read the local CID from /dev/vsock");
  return cid;
}
