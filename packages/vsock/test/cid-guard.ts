// The guard every test that dials vsock goes through. This development machine is
// itself a VM: CID 2 is its host and any other CID but 1 leaves the machine, and that
// host is not ours. So tests dial only CID 1, and only where vsock_loopback keeps
// CID 1 inside the machine (the QEMU test guest).
import { existsSync } from "node:fs";
import { localCid, VMADDR_CID_HOST, VMADDR_CID_LOCAL } from "../src/index.js";

/** Throws unless dialing `cid` provably stays inside this machine. */
export function assertSafeToDial(cid: number): void {
  if (cid === VMADDR_CID_LOCAL) {
    if (!existsSync("/sys/module/vsock_loopback")) {
      throw new Error("refusing to dial CID 1: vsock_loopback is not loaded here, so CID 1 is not known to stay local");
    }
    return;
  }
  if (cid === VMADDR_CID_HOST) throw new Error("refusing to dial CID 2: that is the host of this machine");
  let own: number | undefined;
  try {
    own = localCid();
  } catch {
    own = undefined;
  }
  if (cid === own) throw new Error(`refusing to dial CID ${cid}: that is this machine's own CID`);
  throw new Error(`refusing to dial CID ${cid}: tests dial only CID 1 (loopback)`);
}
