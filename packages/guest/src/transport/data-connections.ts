// The agent's side of data connections (the contract: @guestkit/protocol's
// data-connection.ts): tickets handed out by calls, and the connections that present
// them told apart from HTTP/2 on the same listeners.
//
// Who may connect is unchanged: a data connection arrives on a listener the agent
// already serves (the vsock peer check and the Unix socket's permissions apply before a
// byte is read), and it is worth something only with a ticket that an authorised call
// (token included) received moments ago. A ticket is 32 random bytes, good for one
// connection, for DATA_CONNECTION_WAIT_MS; anything else is closed at once, holds
// nothing, and is logged (at most a line a second, so a flood cannot fill the log).
import { randomBytes, timingSafeEqual } from "node:crypto";
import type * as http2 from "node:http2";
import type { Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";
import {
  DATA_CONNECTION_MAGIC,
  DATA_CONNECTION_REQUEST_KEY,
  DATA_CONNECTION_TICKET_KEY,
  DATA_CONNECTION_WAIT_MS,
  DataConnectionError,
  TICKET_BYTES,
} from "@guestkit/protocol";
import { logError } from "../log.js";
import { hookHttp2Servers } from "./http2-server-hook.js";

const PREAMBLE_BYTES = DATA_CONNECTION_MAGIC.length + TICKET_BYTES;

/** A ticket handed out, and the connection it will bring. */
export interface DataTicket {
  /** 64 hex digits, for the response header. */
  readonly ticket: string;
  /**
   * The connection that presented the ticket; rejects with a DataConnectionError when
   * none did in time, or the ticket was withdrawn.
   */
  readonly connection: Promise<Socket>;
  /** The call is over: the ticket is void, and a connection it brought is closed. */
  withdraw(): void;
}

interface Waiting {
  readonly key: Buffer;
  resolve(socket: Socket): void;
  reject(error: DataConnectionError): void;
}

/** What a call must offer to be handed a ticket (grpc-js server calls of every kind). */
interface TicketedCall {
  readonly metadata: grpc.Metadata;
  sendMetadata(headers: grpc.Metadata): void;
  once(event: "cancelled", listener: () => void): unknown;
}

/** Whether the client of `call` asked for a data connection (it does so only when announced). */
export function asksForDataConnection(call: TicketedCall): boolean {
  return call.metadata.get(DATA_CONNECTION_REQUEST_KEY)[0] === "1";
}

/** Tickets of one agent, and the connections that redeem them. */
export class DataConnections {
  readonly #waiting = new Map<string, Waiting>();
  #refusedSinceLog = 0;
  #lastRefusalLog = 0;

  /**
   * A new ticket, good for one connection within `waitMs` (null: until it is withdrawn,
   * for a call that may rightly take its time: see exec-output-sink.ts).
   */
  grant(waitMs: number | null = DATA_CONNECTION_WAIT_MS): DataTicket {
    const key = randomBytes(TICKET_BYTES);
    const ticket = key.toString("hex");
    let socket: Socket | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const connection = new Promise<Socket>((resolve, reject) => {
      const settle = () => {
        settled = true;
        clearTimeout(timer);
        this.#waiting.delete(ticket);
      };
      this.#waiting.set(ticket, {
        key,
        resolve: (presented) => {
          settle();
          socket = presented;
          resolve(presented);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      });
      if (waitMs !== null) {
        timer = setTimeout(
          () => this.#waiting.get(ticket)?.reject(new DataConnectionError(`no data connection within ${waitMs} ms`)),
          waitMs,
        );
      }
    });
    // A call that never looks at its connection must not leave an unhandled rejection.
    connection.catch(() => {});
    return {
      ticket,
      connection,
      withdraw: () => {
        if (!settled) this.#waiting.get(ticket)?.reject(new DataConnectionError("the call ended"));
        socket?.destroy();
      },
    };
  }

  /**
   * Hands `call` a ticket in its response headers (sent now) and returns it; the ticket
   * is withdrawn when the call is cancelled, and must be by the handler when it is done.
   */
  offer(call: TicketedCall): DataTicket {
    const granted = this.grant();
    const headers = new grpc.Metadata();
    headers.set(DATA_CONNECTION_TICKET_KEY, granted.ticket);
    call.sendMetadata(headers);
    call.once("cancelled", granted.withdraw);
    return granted;
  }

  /**
   * Serves data connections on every listener of `server`: call before the first bind.
   * A connection whose first byte is not the magic's goes to HTTP/2 as before.
   */
  listenOn(server: grpc.Server): void {
    hookHttp2Servers(server, {
      purpose: "data connections",
      created: (http2Server) => this.#sniffConnections(http2Server),
    });
  }

  #sniffConnections(http2Server: http2.Http2Server): void {
    const serveHttp2 = http2Server.listeners("connection") as Array<(socket: Socket) => void>;
    http2Server.removeAllListeners("connection");
    http2Server.on("connection", (socket: Socket) =>
      this.#sniff(socket, () => {
        for (const listener of serveHttp2) listener.call(http2Server, socket);
      }),
    );
  }

  // Reads the first bytes: HTTP/2 gets them back and the socket; a preamble redeems its ticket.
  #sniff(socket: Socket, toHttp2: () => void): void {
    let head: Buffer = Buffer.alloc(0);
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      clearTimeout(timer);
      socket.off("readable", onReadable);
      socket.off("error", onError);
      socket.off("end", onEnd);
    };
    const refuse = (why: string) => {
      stop();
      socket.destroy();
      this.#logRefusal(why);
    };
    const onReadable = () => {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      }
      if (head.length === 0) return;
      if (head[0] !== DATA_CONNECTION_MAGIC[0]) {
        stop();
        socket.unshift(head);
        toHttp2();
        return;
      }
      const magic = head.subarray(0, DATA_CONNECTION_MAGIC.length);
      if (!DATA_CONNECTION_MAGIC.subarray(0, magic.length).equals(magic)) {
        refuse("it is neither HTTP/2 nor a data connection");
        return;
      }
      // It began like a data connection: the rest of the preamble must follow promptly.
      timer ??= setTimeout(() => refuse("no ticket in time"), DATA_CONNECTION_WAIT_MS);
      if (head.length < PREAMBLE_BYTES) return;
      stop();
      const key = head.subarray(DATA_CONNECTION_MAGIC.length, PREAMBLE_BYTES);
      const rest = head.subarray(PREAMBLE_BYTES);
      const waiting = this.#waiting.get(key.toString("hex"));
      // The map lookup found it by its hex; the constant-time compare is for form's sake.
      if (!waiting || !timingSafeEqual(waiting.key, key)) {
        socket.destroy();
        this.#logRefusal("an unknown, expired or used ticket");
        return;
      }
      if (rest.length > 0) socket.unshift(rest);
      // Its reader sees a failure as the end of the stream without its end frame.
      socket.on("error", () => {});
      // A client that sends nothing after its preamble (a download) may half-close: the
      // agent's side must stay open for the frames (HTTP/2's sockets close both ways).
      // The handler's withdraw() closes it at the end of the call.
      socket.allowHalfOpen = true;
      waiting.resolve(socket);
    };
    const onError = () => stop();
    const onEnd = () => {
      stop();
      socket.destroy();
    };
    socket.on("readable", onReadable);
    socket.on("error", onError);
    socket.on("end", onEnd);
  }

  #logRefusal(why: string): void {
    this.#refusedSinceLog += 1;
    const now = Date.now();
    if (now - this.#lastRefusalLog < 1000) return;
    const count = this.#refusedSinceLog;
    this.#refusedSinceLog = 0;
    this.#lastRefusalLog = now;
    logError(`refused a data connection: ${why}${count > 1 ? ` (${count} refused since the last line)` : ""}`);
  }
}
