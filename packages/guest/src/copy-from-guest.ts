import * as grpc from "@grpc/grpc-js";
import type { GuestServiceHandlers } from "@guestkit/protocol";

export const handleCopyFromGuest: GuestServiceHandlers["copyFromGuest"] = (call) =>
  call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "CopyFromGuest: not yet" });
