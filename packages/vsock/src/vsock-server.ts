// Listening on AF_VSOCK: every accepted connection is an ordinary net.Socket.
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { loadNative } from "./native-binding.js";
import { openServerHandle, type PipeHandle, socketFromHandle } from "./pipe-handle.js";
import { checkPort, unavailableError } from "./vsock-address.js";
import { errnoError, type VsockError } from "./vsock-error.js";

/** Options of listenVsock. */
export interface VsockListenOptions {
  /** Pending connections the kernel queues before accept; default 511, as net.Server. */
  backlog?: number;
}

interface VsockServerEvents {
  /**
   * `peerCid` is who connected: VMADDR_CID_HOST (2) for the VMM's host side, VMADDR_CID_LOCAL
   * (1) or this machine's own CID for a process on this machine, another CID for a sibling VM
   * where the VMM allows that. -1 if the kernel would not say (the connection is already gone).
   */
  connection: [socket: Socket, peerCid: number];
  /** An accept failed (for example EMFILE); the server keeps listening. */
  error: [error: VsockError];
  close: [];
}

/** A listening AF_VSOCK socket bound to every CID of this machine. */
export class VsockServer extends EventEmitter<VsockServerEvents> {
  /** The bound port (the kernel's pick when listening on VMADDR_PORT_ANY). */
  readonly port: number;
  #handle: PipeHandle | undefined;

  /** @internal Use listenVsock. */
  constructor(handle: PipeHandle, port: number, peerCid: (fd: number) => number) {
    super();
    this.#handle = handle;
    this.port = port;
    handle.onconnection = (status, client) => {
      if (status < 0 || client === undefined) {
        this.emit("error", errnoError(status, "accept", `vsock accept on port ${port}`));
        return;
      }
      const cid = peerCid(client.fd);
      this.emit("connection", socketFromHandle(client), cid < 0 ? -1 : cid);
    };
  }

  /** Whether close() has not been called yet. */
  get listening(): boolean {
    return this.#handle !== undefined;
  }

  /** Stops accepting and closes the listening fd. Accepted sockets stay open. */
  close(): void {
    const handle = this.#handle;
    if (handle === undefined) return;
    this.#handle = undefined;
    handle.onconnection = null;
    handle.close(() => this.emit("close"));
  }
}

/**
 * Listens on vsock `port` on every CID (VMADDR_CID_ANY). Throws a VsockError at once
 * when that is impossible: no addon, no AF_VSOCK in the kernel, port in use.
 */
export function listenVsock(port: number, options: VsockListenOptions = {}): VsockServer {
  checkPort(port, "listen");
  const backlog = options.backlog ?? 511;
  if (!Number.isInteger(backlog) || backlog < 1 || backlog > 65535) {
    throw new RangeError(`vsock listen: backlog must be an integer from 1 to 65535, got ${backlog}`);
  }
  const loaded = loadNative();
  if (!("native" in loaded)) throw unavailableError(loaded.reason, "listen");
  const { native } = loaded;
  const fd = native.listen(port, backlog);
  if (fd < 0) throw errnoError(fd, "listen", `vsock listen on port ${portName(port)}`);
  const bound = native.localPort(fd);
  const { handle, status } = openServerHandle(fd);
  // libuv listens again on the already listening fd, which only sets the backlog; what
  // matters is that it starts watching the fd for connections to accept.
  const listening = status === 0 ? handle.listen(backlog) : status;
  if (bound < 0 || listening !== 0) {
    handle.close();
    if (status !== 0) native.closeFd(fd);
    throw errnoError(bound < 0 ? bound : listening, "listen", `vsock listen on port ${portName(port)}`);
  }
  return new VsockServer(handle, bound, (accepted) => native.peerCid(accepted));
}

function portName(port: number): string {
  return port === 0xffffffff ? "any" : String(port);
}
