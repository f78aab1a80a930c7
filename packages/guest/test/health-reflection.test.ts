// The agent's health service (served from the generated code) and reflection (loaded on
// first use): real agent process, real gRPC on its Unix socket, and `buf curl` as the
// stand-in for grpcurl.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  createGrpcClientConstructor,
  Health,
  HealthCheckRequestSchema,
  type HealthCheckResponse,
  HealthListRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@guestkit/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type AgentProcess, startAgent } from "../../testkit/src/agent-process.js";

const BUF = fileURLToPath(new URL("../../../node_modules/.bin/buf", import.meta.url));
const HealthClient = createGrpcClientConstructor(Health);

let agent: AgentProcess | undefined;
let client: InstanceType<typeof HealthClient>;

beforeEach(async () => {
  agent = await startAgent();
  client = new HealthClient(`unix:${agent.socketPath}`, grpc.credentials.createInsecure());
});

afterEach(async () => {
  client.close();
  await agent?.stop();
  agent = undefined;
});

const request = (service: string) => create(HealthCheckRequestSchema, { service });

function check(service: string): Promise<HealthCheckResponse> {
  return new Promise((resolve, reject) => {
    client.check(request(service), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (error, response) =>
      error || !response ? reject(error) : resolve(response),
    );
  });
}

function bufCurl(...args: string[]): Promise<string> {
  const socket = agent?.socketPath ?? "";
  return promisify(execFile)(BUF, [
    "curl",
    "--protocol",
    "grpc",
    "--http2-prior-knowledge",
    "--unix-socket",
    socket,
    ...args,
  ]).then((result) => result.stdout);
}

describe("health", () => {
  it("reports the server and GuestService as SERVING, and NOT_FOUND for other names", async () => {
    expect((await check("")).status).toBe(ServingStatus.SERVING);
    expect((await check("guest.GuestService")).status).toBe(ServingStatus.SERVING);
    await expect(check("no.such.Service")).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it("lists every status", async () => {
    const list = await new Promise<Record<string, HealthCheckResponse>>((resolve, reject) =>
      client.list(create(HealthListRequestSchema), new grpc.Metadata(), {}, (error, response) =>
        error || !response ? reject(error) : resolve(response.statuses),
      ),
    );
    expect(Object.fromEntries(Object.entries(list).map(([name, value]) => [name, value.status]))).toEqual({
      "": ServingStatus.SERVING,
      "guest.GuestService": ServingStatus.SERVING,
    });
  });

  it("watch: the current status at once, NOT_SERVING when the agent stops, then the end", async () => {
    const statuses: ServingStatus[] = [];
    const unknown: ServingStatus[] = [];
    const watch = client.watch(request(""), new grpc.Metadata());
    const watchUnknown = client.watch(request("later"), new grpc.Metadata());
    const ended = new Promise<grpc.StatusObject>((resolve) => watch.on("status", resolve));
    watch.on("data", (response: HealthCheckResponse) => statuses.push(response.status));
    const unknownEnded = new Promise<grpc.StatusObject>((resolve) => watchUnknown.on("status", resolve));
    watchUnknown.on("data", (response: HealthCheckResponse) => unknown.push(response.status));
    await expect.poll(() => statuses.length + unknown.length, { timeout: 5000 }).toBe(2);

    const stopping = agent?.stop();
    agent = undefined;
    expect((await ended).code).toBe(grpc.status.OK);
    expect((await unknownEnded).code).toBe(grpc.status.OK);
    expect(await stopping).toBe(0);
    expect(statuses).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    expect(unknown).toEqual([ServingStatus.SERVICE_UNKNOWN]);
  });
});

describe("reflection", () => {
  it("lists both services and lets buf curl call health with no .proto", async () => {
    const services = (await bufCurl("--list-services", "http://agent")).split("\n").filter(Boolean);
    expect(services.sort()).toEqual(["grpc.health.v1.Health", "guest.GuestService"]);
    const reply = JSON.parse(
      await bufCurl("-d", '{"service":"guest.GuestService"}', "http://agent/grpc.health.v1.Health/Check"),
    );
    expect(reply).toEqual({ status: "SERVING" });
    const methods = (await bufCurl("--list-methods", "http://agent")).split("\n");
    expect(methods).toContain("guest.GuestService/Exec");
  });
});

describe("hosts on another gRPC stack", () => {
  // The agent reads a connection's first byte before HTTP/2 starts (to tell data
  // connections apart), so its SETTINGS follow the client's preface: a C-core client
  // (Debian's python3-grpcio, what many existing hosts are built on) must not mind.
  it("a C-core client's health check is answered", async () => {
    const script = [
      "import sys, grpc",
      "channel = grpc.insecure_channel('unix:' + sys.argv[1])",
      "check = channel.unary_unary('/grpc.health.v1.Health/Check')",
      // HealthCheckRequest{service: ""} is empty; the answer SERVING is field 1 = 1.
      "print(check(b'', timeout=10).hex())",
    ].join("\n");
    const { stdout } = await promisify(execFile)("/usr/bin/python3", ["-I", "-c", script, agent?.socketPath ?? ""]);
    expect(stdout.trim()).toBe("0801");
  });
});
