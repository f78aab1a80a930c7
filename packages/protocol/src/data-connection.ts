// The data connection: a call's bulk messages on a byte stream of their own, beside the
// HTTP/2 connection (the `data-connection` capability).
//
// Why: HTTP/2 in Node moves every byte through nghttp2 and JavaScript with per-stream
// flow control, and a session stops reading while its own write is pending, so the
// window cannot be made large enough to keep a fast pipe full (bench/README.md). A
// plain connection of the same transport, with the kernel's socket buffers as the only
// window, carries a file at close to the raw socket's rate.
//
// The contract (stated in guest.proto too):
// 1. The client asks on the call: request header DATA_CONNECTION_REQUEST_KEY = "1",
//    only when the agent announced the capability.
// 2. The agent that takes it sends, in the call's response headers,
//    DATA_CONNECTION_TICKET_KEY: 64 hex digits, a random ticket (32 bytes from the
//    kernel's CSPRNG) good for one connection within DATA_CONNECTION_WAIT_MS. Headers
//    without it mean "in-band": the call goes on as the original protocol has it.
// 3. The client opens another connection to the agent's port by the same way it reached
//    it (another CONNECT through a hybrid-vsock socket, another vsock, Unix or TCP
//    connection) and writes DATA_CONNECTION_MAGIC and the ticket's 32 bytes. The agent
//    tells this from HTTP/2 by the first byte ("G" here, "P" for HTTP/2's preface). A
//    connection with an unknown, expired or used ticket is closed without a word.
// 4. Both then send the call's messages (the same protobuf messages, with the same
//    bounds as in-band) as frames: a 4-byte big-endian length, then the message. A frame
//    of length 0 ends the stream: a connection that closes without it was lost, and what
//    came on it counts for nothing that was not complete (no partial file). A frame
//    longer than MAX_MESSAGE_BYTES is a protocol error.
// 5. Everything else stays on the call: its answer (CopyToGuestResponse), its status,
//    cancellation. The data connection lives as long as the call: a call that ends or is
//    cancelled closes it, and a data connection that is lost fails the call.
// Exec differs in when, not how: the ticket comes in ExecResponse.data_ticket once a
// command's output on the call passed DATA_CONNECTION_MIN_BYTES, the connection then
// carries its stdout and stderr messages, and the exit follows the end frame on the call.
// ForwardPort sends frames both ways, each direction ended by its own end frame.
// Nobody half-closes a data connection: its end frame ends a stream.
import type { Socket } from "node:net";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { createMessageDeserializer } from "./bounded-decode.js";
import { createMessageSerializer } from "./bytes-message-encoding.js";
import { DECODED_ENTRIES_LIMIT } from "./grpc-service.js";
import { CHUNK_SIZE, MAX_MESSAGE_BYTES } from "./limits.js";

export { DATA_CONNECTION_MIN_BYTES, DATA_CONNECTION_WAIT_MS } from "./limits.js";

/** Request header a client sets to "1" to ask for a data connection. */
export const DATA_CONNECTION_REQUEST_KEY = "guestkit-data-connection";
/** Response header carrying the ticket (hex). */
export const DATA_CONNECTION_TICKET_KEY = "guestkit-data-ticket";
/** First bytes of a data connection; no HTTP/2 connection starts with "G". */
export const DATA_CONNECTION_MAGIC = Buffer.from("GKDATA1\n", "latin1");
/** Bytes of a ticket (64 hex digits in the header). */
export const TICKET_BYTES = 32;

const LENGTH_BYTES = 4;
const END_FRAME = Buffer.alloc(LENGTH_BYTES);

/** The bytes a client writes first on a data connection. */
export function dataConnectionPreamble(ticketHex: string): Buffer {
  const ticket = Buffer.from(ticketHex, "hex");
  if (ticket.length !== TICKET_BYTES || ticket.toString("hex") !== ticketHex.toLowerCase()) {
    throw new Error("a data-connection ticket is 64 hex digits");
  }
  return Buffer.concat([DATA_CONNECTION_MAGIC, ticket]);
}

/**
 * The data connection was lost (`lost`: it ended or failed before its end frame), or
 * carried something that is not a frame stream (`protocol`: a frame beyond the limit,
 * bytes after the end frame). A peer that breaks the framing is not worth a retry.
 */
export class DataConnectionError extends Error {
  readonly kind: "lost" | "protocol";

  constructor(message: string, kind: "lost" | "protocol" = "lost") {
    super(message);
    this.name = "DataConnectionError";
    this.kind = kind;
  }
}

/**
 * Unsent bytes a writer may leave in its socket's buffer before it waits: two CHUNK_SIZE
 * messages, one being sent and the next one ready, as an in-band call holds (the
 * agent's MAX_UNSENT_MESSAGES). Waiting on the socket's own high-water mark (16 KiB)
 * instead stopped the writer after every message until the peer had read it all:
 * uploads ran at 200 MiB/s against 260 in-band.
 */
const UNSENT_BYTES = 2 * CHUNK_SIZE;

/**
 * Writes frames at the pace the peer reads: write() resolves at once while fewer than
 * UNSENT_BYTES wait in the socket's buffer, else once it drained. That is all a stalled
 * peer makes the writer hold.
 */
export class FrameWriter<Desc extends DescMessage> {
  readonly #socket: Socket;
  // Never the reusing serializer: the socket keeps each buffer until it is written.
  readonly #serialize: (message: MessageShape<Desc>) => Uint8Array;

  constructor(socket: Socket, schema: Desc) {
    this.#socket = socket;
    this.#serialize = createMessageSerializer(schema);
  }

  async write(message: MessageShape<Desc>): Promise<void> {
    if (!this.writeNow(message)) await drained(this.#socket);
  }

  /**
   * Writes a frame without waiting; false when UNSENT_BYTES or more now wait in the
   * socket's buffer: the caller writes nothing more until the socket's 'drain'.
   */
  writeNow(message: MessageShape<Desc>): boolean {
    const bytes = this.#serialize(message);
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) throw new DataConnectionError("the data connection is closed");
    const length = Buffer.allocUnsafe(LENGTH_BYTES);
    length.writeUInt32BE(bytes.byteLength);
    // One writev for both: no copy of the message to put its length in front.
    socket.cork();
    socket.write(length);
    socket.write(bytes);
    socket.uncork();
    return socket.writableLength < UNSENT_BYTES;
  }

  /**
   * Writes the end frame; resolves once it is handed to the kernel. The connection is
   * not half-closed: the end frame is the end, and whoever owns the socket closes it
   * when the call is over. (A VMM takes a host's half-close for the end of both
   * directions and kills the connection 2 s later, whatever the guest has not read
   * yet: docs/hybrid-vsock.md, "How a connection ends".)
   */
  async end(): Promise<void> {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) throw new DataConnectionError("the data connection is closed");
    await new Promise<void>((resolve, reject) => {
      const onClose = () => reject(new DataConnectionError("the data connection closed before its end was sent"));
      socket.once("close", onClose);
      socket.write(END_FRAME, (error) => {
        socket.off("close", onClose);
        if (error) onClose();
        else resolve();
      });
    });
  }
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (error?: Error) => {
      socket.off("drain", onDrain);
      socket.off("close", onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => settle();
    const onClose = () => settle(new DataConnectionError("the data connection was closed by the peer"));
    socket.on("drain", onDrain);
    socket.on("close", onClose);
  });
}

/**
 * The messages of a frame stream, decoded one at a time as the consumer asks (the
 * socket is read only as fast, so a fast peer is held back by the kernel's buffers).
 * Ends after the end frame; throws DataConnectionError when the connection ends without
 * it, or a frame is over MAX_MESSAGE_BYTES, and what decoding a message throws.
 */
export async function* readFrames<Desc extends DescMessage>(
  socket: Socket,
  schema: Desc,
  maxMessageBytes = MAX_MESSAGE_BYTES,
): AsyncGenerator<MessageShape<Desc>> {
  // The same bounds on what a message may cost decoded as in-band (bounded-decode.ts).
  const deserialize = createMessageDeserializer(schema, DECODED_ENTRIES_LIMIT);
  let pending: Buffer[] = [];
  let buffered = 0;
  // Takes `count` bytes off the front of what is buffered.
  const take = (count: number): Buffer => {
    const first = pending[0] as Buffer;
    if (first.length >= count) {
      const bytes = first.subarray(0, count);
      if (first.length === count) pending.shift();
      else pending[0] = first.subarray(count);
      buffered -= count;
      return bytes;
    }
    const whole = Buffer.concat(pending, buffered);
    const bytes = whole.subarray(0, count);
    pending = whole.length > count ? [whole.subarray(count)] : [];
    buffered -= count;
    return bytes;
  };
  let expected: number | undefined;
  try {
    // Not destroyed on return: a stream that ended may leave the other direction going
    // (a port forward); whoever owns the socket closes it.
    for await (const chunk of socket.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      pending.push(chunk);
      buffered += chunk.length;
      for (;;) {
        if (expected === undefined) {
          if (buffered < LENGTH_BYTES) break;
          expected = take(LENGTH_BYTES).readUInt32BE(0);
          if (expected === 0) {
            if (buffered > 0)
              throw new DataConnectionError("bytes after the end frame on the data connection", "protocol");
            return;
          }
          if (expected > maxMessageBytes) {
            throw new DataConnectionError(
              `a frame of ${expected} bytes on the data connection (at most ${maxMessageBytes})`,
              "protocol",
            );
          }
        }
        if (buffered < expected) break;
        const message = deserialize(take(expected));
        expected = undefined;
        yield message;
      }
    }
  } catch (error) {
    if (error instanceof DataConnectionError) throw error;
    // A socket error (ECONNRESET...) is a lost connection; a decode error goes as it is.
    if (typeof (error as { code?: unknown }).code === "string") {
      throw new DataConnectionError(`the data connection failed: ${(error as Error).message}`);
    }
    throw error;
  }
  throw new DataConnectionError("the data connection closed before the end of the stream");
}
