// Well-known vsock addresses and the argument checks both directions share.
import { VsockError } from "./vsock-error.js";

/** Any CID: what a listener binds to. Not a valid connect target. */
export const VMADDR_CID_ANY = 0xffffffff;
/** The local machine through vsock_loopback. */
export const VMADDR_CID_LOCAL = 1;
/** The host, seen from a guest. */
export const VMADDR_CID_HOST = 2;
/** Any port: listen on a port the kernel picks (see VsockServer.port). */
export const VMADDR_PORT_ANY = 0xffffffff;

/** Throws a RangeError unless `port` is a vsock port (a 32-bit unsigned integer). */
export function checkPort(port: number, syscall: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffffffff) {
    throw new RangeError(`vsock ${syscall}: port must be an integer from 0 to 4294967295, got ${port}`);
  }
}

/** Throws a RangeError unless `cid` can be connected to (VMADDR_CID_ANY cannot). */
export function checkCid(cid: number): void {
  if (!Number.isInteger(cid) || cid < 0 || cid >= VMADDR_CID_ANY) {
    throw new RangeError(`vsock connect: CID must be an integer from 0 to 4294967294, got ${cid}`);
  }
}

/** The error for "no usable vsock here", with the loader's reason. */
export function unavailableError(reason: string, syscall: string): VsockError {
  return new VsockError(`vsock is not available: ${reason}`, { code: "EVSOCKUNAVAILABLE", syscall });
}
