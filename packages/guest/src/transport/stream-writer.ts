// Writing to a server-streaming call at the pace the client reads, holding at most
// MAX_UNSENT_MESSAGES messages that are not yet on the wire.
//
// A grpc-js server call is an object-mode Writable with Node's default high-water mark
// of 16 messages, so its write() says "go on" until 16 messages wait: 4 MiB at
// CHUNK_SIZE, per stream, for a client that stops reading (2000 stalled downloads on
// one connection took the agent to 8 GiB). What the HTTP/2 window lets through is not
// the limit either: Node completes a write on an HTTP/2 stream only once nghttp2 has
// framed its last byte and the session has written it to the socket, which for a
// stalled reader is never. So the agent counts, per call, the messages whose write has
// not completed, and that count is what it holds for the call.
import type * as grpc from "@grpc/grpc-js";

/**
 * Messages of one call written but not yet sent: the one HTTP/2 is sending and the next
 * one, prepared, so the connection need not wait for the following read. 512 MiB of
 * copyFrom and of stdout streaming moved at the same rate with 1, 2 and 16 (4 alternated
 * runs each, a loaded machine), and a stalled download holds 512 KiB of data with 1 or 2
 * alike (the reader keeps the chunk it read until its write returns).
 */
export const MAX_UNSENT_MESSAGES = 2;

/** The call ended (cancelled, disconnected) while the agent still had messages to send. */
export class CallClosedError extends Error {
  constructor() {
    super("the call was closed by the client");
    this.name = "CallClosedError";
  }
}

/** A call the agent answers with a stream of messages. */
type ResponseStream<T> = grpc.ServerWritableStream<unknown, T> | grpc.ServerDuplexStream<unknown, T>;

/** The unsent messages of one call, and who waits for the count to go down. */
interface Backlog {
  unsent: number;
  readonly listeners: Set<() => void>;
}

const backlogs = new WeakMap<object, Backlog>();

function backlogOf(call: object): Backlog {
  let backlog = backlogs.get(call);
  if (!backlog) {
    backlog = { unsent: 0, listeners: new Set() };
    backlogs.set(call, backlog);
  }
  return backlog;
}

/**
 * Writes `message` without waiting. Returns whether another may be written now; when
 * not, wait for `onWritable` (or use writeMessage). A call that is gone takes nothing
 * and returns true: there is no pace to keep.
 */
export function sendMessage<T>(call: ResponseStream<T>, message: T): boolean {
  if (call.cancelled || call.destroyed || call.writableEnded) return true;
  const backlog = backlogOf(call);
  backlog.unsent += 1;
  call.write(message, () => {
    backlog.unsent -= 1;
    if (backlog.unsent === MAX_UNSENT_MESSAGES - 1) {
      for (const listener of [...backlog.listeners]) listener();
    }
  });
  return backlog.unsent < MAX_UNSENT_MESSAGES;
}

/**
 * Calls `listener` each time the call becomes writable again after sendMessage returned
 * false. Returns the function that removes it.
 */
export function onWritable(call: object, listener: () => void): () => void {
  const backlog = backlogOf(call);
  backlog.listeners.add(listener);
  return () => backlog.listeners.delete(listener);
}

/**
 * Writes `message` and resolves when more may be written: at once while fewer than
 * MAX_UNSENT_MESSAGES are unsent, else when the oldest has been sent. Rejects with
 * CallClosedError when the call goes away, because grpc-js never completes (nor calls
 * back) a write on a cancelled call.
 */
export async function writeMessage<T>(call: ResponseStream<T>, message: T): Promise<void> {
  if (call.cancelled || call.destroyed || call.writableEnded) throw new CallClosedError();
  if (sendMessage(call, message)) return;
  await new Promise<void>((resolve, reject) => {
    const settle = (then: () => void) => () => {
      stopListening();
      call.off("close", onClose);
      call.off("cancelled", onClose);
      call.off("error", onClose);
      then();
    };
    const onWritten = settle(resolve);
    const onClose = settle(() => reject(new CallClosedError()));
    const stopListening = onWritable(call, onWritten);
    call.on("close", onClose);
    call.on("cancelled", onClose);
    // grpc-js ends the call itself on a stream error; for us it is gone all the same.
    call.on("error", onClose);
  });
}
