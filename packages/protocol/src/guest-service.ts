// The GuestService bindings both the agent and the host client use.
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { GuestService } from "./gen/guest/guest_pb.js";
import {
  createGrpcClientConstructor,
  createGrpcServiceDefinition,
  type GrpcClient,
  type GrpcServerHandlers,
} from "./grpc-service.js";

type Methods = typeof GuestService extends GenService<infer S extends GenServiceMethods> ? S : never;

/** grpc-js service definition of guest.GuestService, for `server.addService`. */
export const guestServiceDefinition = createGrpcServiceDefinition(GuestService);

/** What the agent implements. */
export type GuestServiceHandlers = GrpcServerHandlers<Methods>;

/** A grpc-js client of guest.GuestService. */
export type GuestServiceClient = GrpcClient<Methods>;

/** Constructor of GuestServiceClient. */
export const GuestServiceClient = createGrpcClientConstructor(GuestService);
