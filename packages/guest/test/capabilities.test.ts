// The agent's capability announcement (packages/protocol/src/capabilities.ts): one
// response header on every call of every service, read with raw grpc-js clients.
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CAPABILITIES_METADATA_KEY,
  Capability,
  createGrpcClientConstructor,
  ExecRequestSchema,
  GuestServiceClient,
  Health,
  HealthCheckRequestSchema,
  parseCapabilities,
  StatPathRequestSchema,
} from "@guestkit/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentProcess, startAgent } from "../../testkit/src/agent-process.js";

const HealthClient = createGrpcClientConstructor(Health);
let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgent();
});

afterAll(async () => {
  await agent.stop();
});

// Every capability this version defines.
const EXPECTED = Object.values(Capability).sort();

// Resolves with the capabilities in the response headers of the call `start` makes.
function announced(call: {
  on(event: "metadata", listener: (headers: grpc.Metadata) => void): unknown;
}): Promise<string[]> {
  return new Promise((resolve) => {
    call.on("metadata", (headers) => resolve([...parseCapabilities(headers.get(CAPABILITIES_METADATA_KEY))].sort()));
  });
}

describe("the capability header", () => {
  it("is on every call: health, StatPath, Exec", async () => {
    const target = `unix:${agent.socketPath}`;
    const health = new HealthClient(target, grpc.credentials.createInsecure());
    const guest = new GuestServiceClient(target, grpc.credentials.createInsecure());
    try {
      const check = health.check(create(HealthCheckRequestSchema, { service: "" }), new grpc.Metadata(), {}, () => {});
      expect(await announced(check)).toEqual(EXPECTED);
      const stat = guest.statPath(create(StatPathRequestSchema, { path: "/" }), new grpc.Metadata(), {}, () => {});
      expect(await announced(stat)).toEqual(EXPECTED);
      // An Exec sends its headers with its first output (here, none before the exit).
      const exec = guest.exec(new grpc.Metadata());
      const seen = announced(exec);
      exec.on("data", () => {});
      exec.on("error", () => {});
      exec.write(create(ExecRequestSchema, { request: { case: "start", value: { command: ["true"] } } }));
      exec.end();
      expect(await seen).toEqual(EXPECTED);
    } finally {
      health.close();
      guest.close();
    }
  });
});
