// grpc.health.v1.Health served from the generated code the agent already loads.
// grpc-health-check would cost about 5 MiB and 35-45 ms of start-up, because it parses
// health.proto with protobufjs at run time; this is the same service in a few lines.
import { create } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import {
  createGrpcServiceDefinition,
  type GrpcServerHandlers,
  Health,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@guestkit/protocol";

type Methods = typeof Health extends GenService<infer S extends GenServiceMethods> ? S : never;

/** The serving statuses a health service can report for a service name. */
export type HealthStatus = "SERVING" | "NOT_SERVING";

/** A running health service: its statuses can change, and watchers hear of it. */
export interface HealthService {
  /** Sets the status of `service` ("" is the server as a whole); watchers get it at once. */
  setStatus(service: string, status: HealthStatus): void;
  /** Ends every Watch call (status OK), so a server shutdown need not wait for them. */
  endWatches(): void;
}

interface Watcher {
  send(status: ServingStatus): void;
  end(): void;
}

// More names than a handful would mean a client is filling the agent's memory with
// watches of made-up services; the health checking spec allows RESOURCE_EXHAUSTED.
const MAX_WATCHERS = 1000;

/** Adds grpc.health.v1.Health (Check, Watch, List) to `server` with the given statuses. */
export function addHealthService(server: grpc.Server, initial: Record<string, HealthStatus>): HealthService {
  const statuses = new Map<string, ServingStatus>();
  for (const [name, status] of Object.entries(initial)) statuses.set(name, ServingStatus[status]);
  const watchers = new Map<string, Set<Watcher>>();
  let watcherCount = 0;
  const response = (status: ServingStatus) => create(HealthCheckResponseSchema, { status });

  const handlers: GrpcServerHandlers<Methods> = {
    check(call, callback) {
      const status = statuses.get(call.request.service);
      if (status === undefined) {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${JSON.stringify(call.request.service)}` });
        return;
      }
      callback(null, response(status));
    },
    watch(call) {
      if (watcherCount >= MAX_WATCHERS) {
        call.emit("error", { code: grpc.status.RESOURCE_EXHAUSTED, details: "too many health watches" });
        return;
      }
      const name = call.request.service;
      let last: ServingStatus | undefined;
      const send = (status: ServingStatus) => {
        // The spec sends a message only when the status changes.
        if (status === last) return;
        last = status;
        call.write(response(status));
      };
      let set = watchers.get(name);
      if (!set) {
        set = new Set();
        watchers.set(name, set);
      }
      const watcher: Watcher = { send, end: () => call.end() };
      set.add(watcher);
      watcherCount++;
      let gone = false;
      const forget = () => {
        if (gone) return;
        gone = true;
        set.delete(watcher);
        watcherCount--;
        if (set.size === 0) watchers.delete(name);
      };
      call.on("cancelled", forget);
      call.on("finish", forget);
      send(statuses.get(name) ?? ServingStatus.SERVICE_UNKNOWN);
    },
    list(_call, callback) {
      const list = create(HealthListResponseSchema);
      for (const [name, status] of statuses) list.statuses[name] = response(status);
      callback(null, list);
    },
  };
  server.addService(
    createGrpcServiceDefinition(Health) as unknown as grpc.ServiceDefinition,
    handlers as unknown as grpc.UntypedServiceImplementation,
  );

  return {
    setStatus(service, status) {
      const value = ServingStatus[status];
      statuses.set(service, value);
      for (const watcher of watchers.get(service) ?? []) watcher.send(value);
    },
    endWatches() {
      for (const set of [...watchers.values()]) for (const watcher of [...set]) watcher.end();
    },
  };
}
