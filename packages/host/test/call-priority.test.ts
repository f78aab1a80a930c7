// The `priority` request header follows the capability rule: it goes only to an agent that
// announced `call-priority`; an agent that knows only the original protocol never sees it.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CALL_PRIORITY,
  CAPABILITIES_METADATA_KEY,
  Capability,
  guestServiceDefinition,
  type StatPathRequest,
  type StatPathResponse,
  StatPathResponseSchema,
} from "@guestkit/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { addHealthService } from "../../guest/src/transport/health-service.js";
import { createGuestClient } from "../src/guest-client.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A StatPath-only agent that announces `capabilities` and records each StatPath's
 * `priority` header. It serves health as agents do: the client learns the capabilities
 * from its health check.
 */
async function startRecordingAgent(capabilities: string[]): Promise<{ target: string; seen: unknown[][] }> {
  const dir = await mkdtemp(join(tmpdir(), "guestkit-priority-"));
  const seen: unknown[][] = [];
  const announce: grpc.ServerInterceptor = (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      sendMetadata(metadata, next) {
        if (capabilities.length > 0) metadata.set(CAPABILITIES_METADATA_KEY, capabilities.join(","));
        next(metadata);
      },
    });
  const server = new grpc.Server({ interceptors: [announce] });
  const unimplemented = (call: { destroy(error: Error): void }) =>
    call.destroy(Object.assign(new Error("unimplemented"), { code: grpc.status.UNIMPLEMENTED }));
  server.addService(
    guestServiceDefinition as unknown as grpc.ServiceDefinition,
    {
      statPath(
        call: grpc.ServerUnaryCall<StatPathRequest, StatPathResponse>,
        done: grpc.sendUnaryData<StatPathResponse>,
      ) {
        seen.push(call.metadata.get("priority"));
        done(null, create(StatPathResponseSchema, { exists: false }));
      },
      copyToGuest: unimplemented,
      copyFromGuest: unimplemented,
      exec: unimplemented,
    } as unknown as grpc.UntypedServiceImplementation,
  );
  addHealthService(server, { "": "SERVING" });
  const socket = join(dir, "agent.sock");
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolve(),
    ),
  );
  cleanups.push(async () => {
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });
  return { target: `unix:${socket}`, seen };
}

describe("the priority header", () => {
  it("is not sent to an agent that did not announce call-priority", async () => {
    const agent = await startRecordingAgent([]);
    const client = createGuestClient(agent.target);
    cleanups.push(() => client.close());
    expect((await client.stat("/x")).exists).toBe(false);
    expect(agent.seen).toEqual([[]]);
  });

  it("is sent with every call to an agent that announced it", async () => {
    const agent = await startRecordingAgent([Capability.EXEC_CONTROL, Capability.CALL_PRIORITY]);
    const client = createGuestClient(agent.target);
    cleanups.push(() => client.close());
    await client.stat("/x");
    await client.stat("/y");
    expect(agent.seen).toEqual([[CALL_PRIORITY], [CALL_PRIORITY]]);
  });
});
