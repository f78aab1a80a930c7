// Where a command's output goes: the Exec call, and, for a client that asked for a data
// connection (guest.proto, "Data connections"), a data connection once the output on
// the call has passed DATA_CONNECTION_MIN_BYTES. Short commands never pay for a second
// connection; a command that streams a lot moves its output without HTTP/2 flow control.
//
// The switch keeps order: the message that crosses the threshold still goes on the call,
// then `data_ticket`; what the command writes while the client connects waits here (the
// outputs are paused at once, so that is at most what was already read); once the
// connection came, it goes first, then everything later. end() writes the end frame,
// which the caller awaits before it sends the exit.
//
// The ticket has no deadline: it is good until the call ends. A client whose reader has
// stopped reads nothing from the call, the ticket included, and must not lose its
// command for that: until it connects, the command is held back, as it would be by a
// client that does not read. A client that goes away cancels the call, which voids it.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  DATA_CONNECTION_MIN_BYTES,
  DataConnectionError,
  type ExecResponse,
  ExecResponseSchema,
  FrameWriter,
} from "@guestkit/protocol";
import type { DataConnections, DataTicket } from "../transport/data-connections.js";
import type { OutputSink } from "./exec-output.js";
import type { OutputSource } from "./process-handle.js";

type Response = NonNullable<MessageInitShape<typeof ExecResponseSchema>["response"]>;

/** What the sink needs from its call. */
export interface ExecOutputCall {
  /** Sends a message on the call; false means "stop until onWritable". */
  send(response: Response): boolean;
  /** Registers the listener for the call becoming writable again. */
  onWritable(listener: () => void): void;
  /** The data connection did not come, or was lost: the call fails with this. */
  fail(error: DataConnectionError): void;
}

export class ExecOutputSink implements OutputSink {
  readonly #call: ExecOutputCall;
  // Undefined when the client did not ask for a data connection.
  readonly #data: DataConnections | undefined;
  #state: "in-band" | "connecting" | "data" | "ended" = "in-band";
  #inBandBytes = 0;
  #ticket: DataTicket | undefined;
  #frames: FrameWriter<typeof ExecResponseSchema> | undefined;
  // Output the command wrote while the client was connecting.
  #held: ExecResponse[] = [];
  #drainListener: (() => void) | undefined;

  constructor(call: ExecOutputCall, data: DataConnections | undefined) {
    this.#call = call;
    this.#data = data;
    call.onWritable(() => {
      if (this.#state === "in-band") this.#drainListener?.();
    });
  }

  onDrain(listener: () => void): void {
    this.#drainListener = listener;
  }

  write(kind: OutputSource["kind"], bytes: Uint8Array): boolean {
    switch (this.#state) {
      case "in-band": {
        const more = this.#call.send({ case: kind, value: bytes });
        this.#inBandBytes += bytes.byteLength;
        if (this.#data === undefined || this.#inBandBytes < DATA_CONNECTION_MIN_BYTES) return more;
        this.#offer(this.#data);
        return false;
      }
      case "connecting":
        this.#held.push(create(ExecResponseSchema, { response: { case: kind, value: bytes } }));
        return false;
      case "data":
        return this.#writeFrame(create(ExecResponseSchema, { response: { case: kind, value: bytes } }));
      case "ended":
        return true;
    }
  }

  /**
   * The output is over: on a data connection, the end frame is written (after the
   * connection came, if it is still being opened). Rejects with DataConnectionError
   * when the connection never came or was lost.
   */
  async end(): Promise<void> {
    if (this.#state === "in-band" || this.#state === "ended") return;
    await this.#ticket?.connection;
    const frames = this.#frames;
    this.#state = "ended";
    if (frames) await frames.end();
  }

  /** The call is over: the ticket is void and its connection closed. */
  close(): void {
    this.#state = "ended";
    this.#ticket?.withdraw();
  }

  #offer(data: DataConnections): void {
    const ticket = data.grant(null);
    this.#ticket = ticket;
    this.#state = "connecting";
    this.#call.send({ case: "dataTicket", value: ticket.ticket });
    ticket.connection.then(
      (socket) => {
        if (this.#state !== "connecting") return;
        // A connection that goes before its end frame was written took output with it.
        socket.once("close", () => {
          if (this.#state !== "ended") {
            this.#state = "ended";
            this.#call.fail(new DataConnectionError("the data connection was lost"));
          }
        });
        socket.on("drain", () => {
          if (this.#state === "data") this.#drainListener?.();
        });
        this.#frames = new FrameWriter(socket, ExecResponseSchema);
        this.#state = "data";
        const held = this.#held;
        this.#held = [];
        let more = true;
        for (const message of held) more = this.#writeFrame(message);
        if (more) this.#drainListener?.();
      },
      (error: unknown) => {
        if (this.#state !== "connecting") return;
        this.#state = "ended";
        this.#call.fail(
          error instanceof DataConnectionError ? error : new DataConnectionError("the data connection failed"),
        );
      },
    );
  }

  #writeFrame(message: ExecResponse): boolean {
    try {
      return (this.#frames as FrameWriter<typeof ExecResponseSchema>).writeNow(message);
    } catch (error) {
      // Closed under us: the close listener reports it.
      if (error instanceof DataConnectionError) return false;
      throw error;
    }
  }
}
