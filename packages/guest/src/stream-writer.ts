// Writing to a server-streaming call at the pace the client reads.
import type * as grpc from "@grpc/grpc-js";

/** The call ended (cancelled, disconnected) while the agent still had messages to send. */
export class CallClosedError extends Error {
  constructor() {
    super("the call was closed by the client");
    this.name = "CallClosedError";
  }
}

/**
 * Writes `message` and resolves when more may be written: at once while the call's
 * buffer has room, else on `drain`. Rejects with CallClosedError when the call goes away,
 * because grpc-js never drains (nor calls back) a cancelled call.
 */
export async function writeMessage<T>(call: grpc.ServerWritableStream<unknown, T>, message: T): Promise<void> {
  if (call.cancelled || call.destroyed || call.writableEnded) throw new CallClosedError();
  if (call.write(message)) return;
  await new Promise<void>((resolve, reject) => {
    const settle = (then: () => void) => () => {
      call.off("drain", onDrain);
      call.off("close", onClose);
      call.off("cancelled", onClose);
      call.off("error", onClose);
      then();
    };
    const onDrain = settle(resolve);
    const onClose = settle(() => reject(new CallClosedError()));
    call.on("drain", onDrain);
    call.on("close", onClose);
    call.on("cancelled", onClose);
    // grpc-js ends the call itself on a stream error; for us it is gone all the same.
    call.on("error", onClose);
  });
}
