export {
  checkCid,
  VMADDR_CID_ANY,
  VMADDR_CID_HOST,
  VMADDR_CID_LOCAL,
  VMADDR_PORT_ANY,
} from "./vsock-address.js";
export { localCid, vsockUnavailableReason } from "./vsock-availability.js";
export { connectVsock, type VsockConnectOptions } from "./vsock-connect.js";
export { VsockError } from "./vsock-error.js";
export { listenVsock, type VsockListenOptions, VsockServer } from "./vsock-server.js";
