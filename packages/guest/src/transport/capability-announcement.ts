// Announces what this agent supports beyond the original protocol (see
// packages/protocol/src/capabilities.ts for the rule): one response header on every call
// of every service, so a client learns it from whichever call it makes first.
import * as grpc from "@grpc/grpc-js";
import { CAPABILITIES_METADATA_KEY, Capability, formatCapabilities } from "@guestkit/protocol";

/** What this agent announces. */
export const AGENT_CAPABILITIES: readonly string[] = [
  Capability.EXEC_CONTROL,
  Capability.COPY_MULTI_ENTRY,
  Capability.COPY_BATCH,
  // server.ts accepts pings at any rate (grpc-js servers enforce no ping policy).
  Capability.KEEPALIVE_PINGS,
  Capability.PORT_FORWARD,
  Capability.DETACHED,
  Capability.EXEC_STDIN_CREDIT,
  Capability.CALL_PRIORITY,
  Capability.DATA_CONNECTION,
];

/** A server interceptor that adds the capability header to every call's response headers. */
export function createCapabilityInterceptor(names: readonly string[] = AGENT_CAPABILITIES): grpc.ServerInterceptor {
  const value = formatCapabilities(names);
  return (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      sendMetadata(metadata, next) {
        metadata.set(CAPABILITIES_METADATA_KEY, value);
        next(metadata);
      },
    });
}
