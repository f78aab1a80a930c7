export { dialVsock, type VsockDialOptions } from "./vsock-dial.js";
