// The host's side of data connections (the contract: @guestkit/protocol's
// data-connection.ts): ask on the call, take the ticket from its response headers, and
// open the connection by the same way the agent was reached.
import type { Socket } from "node:net";
import type * as grpc from "@grpc/grpc-js";
import {
  DATA_CONNECTION_REQUEST_KEY,
  DATA_CONNECTION_TICKET_KEY,
  DataConnectionError,
  dataConnectionPreamble,
} from "@guestkit/protocol";
import { type DialOptions, dial } from "./dial.js";
import type { GuestTarget } from "./target.js";

/** `metadata` with the request for a data connection added (a copy: the caller's stays as it was). */
export function askForDataConnection(metadata: grpc.Metadata): grpc.Metadata {
  const asked = metadata.clone();
  asked.set(DATA_CONNECTION_REQUEST_KEY, "1");
  return asked;
}

/**
 * The ticket in the call's response headers; undefined when the headers have none (the
 * agent chose in-band) or the call ended before any headers came. A guest is not trusted
 * with the form: anything but 64 hex digits is treated as no ticket.
 */
export function ticketOf(call: NodeJS.EventEmitter): Promise<string | undefined> {
  return new Promise<string | undefined>((resolve) => {
    const settle = (ticket: string | undefined) => {
      call.off("metadata", onMetadata);
      call.off("status", onEnd);
      call.off("error", onEnd);
      resolve(ticket);
    };
    const onMetadata = (headers: grpc.Metadata) => {
      const value = headers.get(DATA_CONNECTION_TICKET_KEY)[0];
      settle(isTicket(value) ? value : undefined);
    };
    const onEnd = () => settle(undefined);
    call.on("metadata", onMetadata);
    call.on("status", onEnd);
    call.on("error", onEnd);
  });
}

/** Whether a guest's `value` has the form of a ticket: 64 lowercase hex digits. */
export function isTicket(value: unknown): value is string {
  return typeof value === "string" && /^[0-9a-f]{64}$/.test(value);
}

/**
 * Opens the data connection for `ticket` to `target` and presents it. The socket is
 * paused; a failure is a GuestError from the dialer, as for the call's own connection.
 */
export async function openDataConnection(target: GuestTarget, ticket: string, options: DialOptions): Promise<Socket> {
  const socket = await dial(target, options);
  socket.write(dataConnectionPreamble(ticket));
  // Errors reach whoever reads or writes it; an unread one must not crash the process.
  socket.on("error", () => {});
  return socket;
}

// A data connection whose call has ended may still hold frames in the kernel's buffers,
// so it is not closed with the call; but one that then sends nothing for this long while
// its reader waits will never finish.
const QUIET_AFTER_CALL_MS = 1000;

/**
 * `messages` of the data connection `socket`, ended with a lost-connection
 * DataConnectionError once `callEnded()` and the connection then sends nothing for
 * QUIET_AFTER_CALL_MS while the reader waits for the next message. Only time spent
 * waiting counts: a reader busy writing to a slow disk is never cut off.
 */
export async function* untilQuietAfterCall<T>(
  messages: AsyncGenerator<T>,
  socket: Socket,
  callEnded: () => boolean,
): AsyncGenerator<T> {
  try {
    for (;;) {
      let seen = socket.bytesRead;
      const timer = setInterval(() => {
        if (callEnded() && socket.bytesRead === seen) {
          socket.destroy(
            new DataConnectionError(
              `the call ended, and its data connection sent nothing more for ${QUIET_AFTER_CALL_MS} ms before its end`,
            ),
          );
        }
        seen = socket.bytesRead;
      }, QUIET_AFTER_CALL_MS);
      let step: IteratorResult<T>;
      try {
        step = await messages.next();
      } finally {
        clearInterval(timer);
      }
      if (step.done) return;
      yield step.value;
    }
  } finally {
    await messages.return(undefined);
  }
}
