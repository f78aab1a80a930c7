import * as grpc from "@grpc/grpc-js";
import type { GuestServiceHandlers } from "@guestkit/protocol";
import type { RunningCommands } from "./running-commands.js";

export function createExecHandler(_commands: RunningCommands): GuestServiceHandlers["exec"] {
  return (call) => call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "Exec: not yet" });
}
