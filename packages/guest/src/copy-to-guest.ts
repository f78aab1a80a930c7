import * as grpc from "@grpc/grpc-js";
import type { GuestServiceHandlers } from "@guestkit/protocol";

export const handleCopyToGuest: GuestServiceHandlers["copyToGuest"] = (_call, callback) =>
  callback({ code: grpc.status.UNIMPLEMENTED, details: "CopyToGuest: not yet" });
