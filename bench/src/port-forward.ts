// Port forwarding: bytes through one forwarded TCP connection (guestkit's ForwardPort, over
// the agent's Unix socket), beside the same bytes over a direct loopback TCP connection to
// the same server, in the same run. The server, on this machine (which plays the guest),
// discards what it reads and, once the client half-closes, sends the same number of bytes
// back; each run is timed from the first byte sent to the last byte received.
import { type AddressInfo, connect, createServer, type Server } from "node:net";
import type { Duplex } from "node:stream";
import type { GuestClient } from "@guestkit/host";
import { type Measurement, measured, mibPerSecond, since } from "./stats.js";

const CHUNK = 256 * 1024;

/** `bytes` each way through a forward and directly, `reps` times each, MiB/s (both directions counted). */
export async function measurePortForward(client: GuestClient, bytes: number, reps: number): Promise<Measurement[]> {
  const server = await startMirror();
  const port = (server.address() as AddressInfo).port;
  try {
    const direct: number[] = [];
    const forwarded: number[] = [];
    for (let i = 0; i < reps; i++) {
      direct.push(await roundTrip(() => Promise.resolve(connect(port, "127.0.0.1")), bytes));
      forwarded.push(await roundTrip(() => client.forwardPort(port), bytes));
    }
    const section = `port forward, ${bytes / 2 ** 20} MiB each way`;
    return [
      measured(section, "guestkit forwardPort", "MiB/s", forwarded),
      measured(section, "direct TCP connection", "MiB/s", direct, { note: "the same server, loopback" }),
    ];
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

// Reads everything, then answers with as many bytes.
function startMirror(): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    let received = 0;
    socket.on("data", (data: Buffer) => {
      received += data.length;
    });
    socket.on("end", () => {
      const chunk = Buffer.alloc(CHUNK, 7);
      const send = () => {
        while (received > 0) {
          const piece = received >= CHUNK ? chunk : chunk.subarray(0, received);
          received -= piece.length;
          if (!socket.write(piece)) {
            socket.once("drain", send);
            return;
          }
        }
        socket.end();
      };
      send();
    });
    socket.on("error", () => {});
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function roundTrip(open: () => Promise<Duplex>, bytes: number): Promise<number> {
  const stream = await open();
  const started = performance.now();
  const received = new Promise<number>((resolve, reject) => {
    let count = 0;
    stream.on("data", (data: Buffer) => {
      count += data.length;
    });
    stream.on("end", () => resolve(count));
    stream.on("error", reject);
  });
  const chunk = Buffer.alloc(CHUNK, 1);
  for (let sent = 0; sent < bytes; sent += CHUNK) {
    if (!stream.write(sent + CHUNK <= bytes ? chunk : chunk.subarray(0, bytes - sent))) {
      await new Promise((resolve) => stream.once("drain", resolve));
    }
  }
  stream.end();
  const count = await received;
  if (count !== bytes) throw new Error(`got ${count} of ${bytes} bytes back`);
  return mibPerSecond(2 * bytes, since(started));
}
