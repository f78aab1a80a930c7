// Wraps a vsock fd in libuv's pipe handle. libuv's pipe code never checks the address
// family, so on an AF_VSOCK stream socket it reads, writes, listens and accepts
// natively, and Node builds ordinary net.Socket objects on it (see README.md for why
// this and not a poll-based Duplex in C).
import { Socket } from "node:net";

/** The part of Node's internal Pipe handle this package uses. */
export interface PipeHandle {
  open(fd: number): number;
  /** The fd under the handle (Node's stream handles expose it on Unix). */
  readonly fd: number;
  listen(backlog: number): number;
  close(callback?: () => void): void;
  onconnection: ((status: number, client?: PipeHandle) => void) | null;
}

interface PipeWrapBinding {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number; SERVER: number };
}

let binding: PipeWrapBinding | undefined;

function pipeWrap(): PipeWrapBinding {
  // process.binding is deprecated only as documentation (a warning needs
  // --pending-deprecation), and pipe_wrap is on its allow-list in Node 20 to 24.
  binding ??= (process as unknown as { binding(name: string): PipeWrapBinding }).binding("pipe_wrap");
  return binding;
}

/** A server pipe handle that owns `fd` (closing the handle closes the fd); returns 0 or -errno. */
export function openServerHandle(fd: number): { handle: PipeHandle; status: number } {
  const { Pipe, constants } = pipeWrap();
  const handle = new Pipe(constants.SERVER);
  return { handle, status: handle.open(fd) };
}

/** A net.Socket on a connected fd; the socket owns the fd from here on. Returns -errno if libuv refuses it. */
export function socketFromFd(fd: number): Socket | number {
  const { Pipe, constants } = pipeWrap();
  const handle = new Pipe(constants.SOCKET);
  const status = handle.open(fd);
  if (status !== 0) {
    handle.close();
    return status;
  }
  return socketFromHandle(handle);
}

/** A net.Socket on an accepted client handle, as net.Server makes them. */
export function socketFromHandle(handle: PipeHandle): Socket {
  return new Socket({ handle, readable: true, writable: true } as unknown as ConstructorParameters<typeof Socket>[0]);
}
