import * as grpc from "@grpc/grpc-js";
import type { GuestServiceHandlers } from "@guestkit/protocol";

export const handleStatPath: GuestServiceHandlers["statPath"] = (_call, callback) =>
  callback({ code: grpc.status.UNIMPLEMENTED, details: "StatPath: not yet" });
