// The host side of the Cloud Hypervisor / Firecracker hybrid-vsock handshake
// (docs/hybrid-vsock.md): on a fresh connection to the VMM's Unix socket, write
// `CONNECT <port>\n`, read `OK <host_side_port>\n`, and from then on the socket carries
// the guest's bytes.
import type { Socket } from "node:net";
import { Code, cancelledError, GuestError } from "../guest-error.js";

/** Options of hybridVsockHandshake. */
export interface HybridVsockHandshakeOptions {
  /** Give up when no complete answer arrived within this long. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Prefix for error messages (the target). */
  context?: string;
}

/** What the VMM said. */
export interface HybridVsockHandshakeResult {
  /** The host-side port the VMM assigned (Cloud Hypervisor starts at 1073741824). */
  hostPort: number;
}

// Longest answer accepted: "OK 4294967295\n" is 14 bytes; VMMs send nothing longer.
// A longer line without a newline is not a VMM talking.
const MAX_ANSWER_BYTES = 64;

/**
 * Runs the handshake on a connected socket. On success the socket is paused, with any
 * guest bytes that came in the same read as the OK line put back (unshift) so the next
 * reader sees them first. On failure the socket is destroyed and the promise rejects
 * with a GuestError (UNAVAILABLE): `no-listener` when the VMM closed the connection
 * (no agent on that port), `handshake-timeout`, or `bad-handshake`.
 */
export function hybridVsockHandshake(
  socket: Socket,
  port: number,
  options: HybridVsockHandshakeOptions,
): Promise<HybridVsockHandshakeResult> {
  const context = options.context ?? `hybrid vsock port ${port}`;
  return new Promise((resolve, reject) => {
    let received: Buffer = Buffer.alloc(0);
    let settled = false;
    // The CONNECT line goes out in ONE write: Firecracker drops a connection whose line
    // is not complete on its first read, and old Cloud Hypervisor spins on a half line.
    // So the socket is never destroyed while that write is still in flight.
    let writeDone = false;
    let destroyWhenWritten = false;

    const finish = (error: GuestError | undefined, hostPort?: number) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
      options.signal?.removeEventListener("abort", onAbort);
      if (error) {
        // Keep an error listener: a late ECONNRESET must not become an uncaught exception.
        socket.on("error", () => {});
        if (writeDone) socket.destroy();
        else destroyWhenWritten = true;
        reject(error);
        return;
      }
      resolve({ hostPort: hostPort as number });
    };
    const fail = (reason: "no-listener" | "handshake-timeout" | "bad-handshake", text: string) =>
      finish(new GuestError(Code.UNAVAILABLE, text, { reason, context }));

    const onData = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const newline = received.indexOf(0x0a);
      if (newline < 0) {
        if (received.length > MAX_ANSWER_BYTES)
          fail("bad-handshake", `unexpected answer to CONNECT: ${quote(received)}`);
        return;
      }
      const line = received.subarray(0, newline).toString("latin1");
      const match = /^OK (\d{1,10})$/.exec(line);
      if (!match) {
        fail("bad-handshake", `unexpected answer to CONNECT: ${quote(received.subarray(0, newline + 1))}`);
        return;
      }
      // Stop the flow before handing the socket on: whatever reads next resumes it.
      socket.pause();
      const rest = received.subarray(newline + 1);
      if (rest.length > 0) socket.unshift(rest);
      finish(undefined, Number(match[1]));
    };
    const onEnd = () => {
      // Cloud Hypervisor and Firecracker answer "nothing listens on that port" with a
      // plain close (ECONNRESET if bytes were already pipelined): no OK line.
      fail("no-listener", `no agent listening on port ${port} (the VMM closed the connection)`);
    };
    const onError = (error: Error) => {
      const errno = (error as NodeJS.ErrnoException).code;
      if (errno === "ECONNRESET" || errno === "EPIPE") onEnd();
      else finish(new GuestError(Code.UNAVAILABLE, error.message, { reason: "no-listener", cause: error, context }));
    };
    const onAbort = () => finish(cancelledError(options.signal, context));

    const timer = setTimeout(
      () =>
        fail(
          "handshake-timeout",
          `no answer to CONNECT ${port} within ${options.timeoutMs} ms (guest not booted yet, or the VMM is hung)`,
        ),
      options.timeoutMs,
    );
    if (options.signal?.aborted) {
      writeDone = true;
      onAbort();
      return;
    }
    options.signal?.addEventListener("abort", onAbort, { once: true });
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
    socket.on("error", onError);
    // The socket may arrive paused (dial() hands sockets on paused); read the answer.
    socket.resume();
    socket.write(Buffer.from(`CONNECT ${port}\n`, "latin1"), () => {
      writeDone = true;
      if (destroyWhenWritten) socket.destroy();
    });
  });
}

function quote(bytes: Buffer): string {
  return JSON.stringify(bytes.subarray(0, MAX_ANSWER_BYTES).toString("latin1"));
}
