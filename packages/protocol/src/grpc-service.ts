// Turns a protobuf-es GenService into what grpc-js needs (protobuf-es v2 has no
// maintained grpc-js generator). Everything is derived from the generated descriptor,
// so the contract has one source: proto/guest/guest.proto.
import type { MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import { createMessageDeserializer } from "./bounded-decode.js";
import { createMessageSerializer } from "./bytes-message-encoding.js";
import { MAX_BATCH_ENTRIES } from "./limits.js";

type In<M extends GenServiceMethods[string]> = MessageShape<M["input"]>;
type Out<M extends GenServiceMethods[string]> = MessageShape<M["output"]>;

/** grpc-js method definitions keyed by the generated method names (`exec`, `statPath`...). */
export type GrpcServiceDefinition<S extends GenServiceMethods> = {
  [K in keyof S]: grpc.MethodDefinition<In<S[K]>, Out<S[K]>>;
};

/** The server-side handler type grpc-js expects for each method kind. */
export type GrpcServerHandlers<S extends GenServiceMethods> = {
  [K in keyof S]: S[K]["methodKind"] extends "unary"
    ? grpc.handleUnaryCall<In<S[K]>, Out<S[K]>>
    : S[K]["methodKind"] extends "server_streaming"
      ? grpc.handleServerStreamingCall<In<S[K]>, Out<S[K]>>
      : S[K]["methodKind"] extends "client_streaming"
        ? grpc.handleClientStreamingCall<In<S[K]>, Out<S[K]>>
        : grpc.handleBidiStreamingCall<In<S[K]>, Out<S[K]>>;
};

/** The client-side call signatures of a generic grpc-js client for each method kind. */
export type GrpcClient<S extends GenServiceMethods> = grpc.Client & {
  [K in keyof S]: S[K]["methodKind"] extends "unary"
    ? (
        request: In<S[K]>,
        metadata: grpc.Metadata,
        options: Partial<grpc.CallOptions>,
        callback: grpc.requestCallback<Out<S[K]>>,
      ) => grpc.ClientUnaryCall
    : S[K]["methodKind"] extends "server_streaming"
      ? (
          request: In<S[K]>,
          metadata: grpc.Metadata,
          options?: Partial<grpc.CallOptions>,
        ) => grpc.ClientReadableStream<Out<S[K]>>
      : S[K]["methodKind"] extends "client_streaming"
        ? (
            metadata: grpc.Metadata,
            options: Partial<grpc.CallOptions>,
            callback: grpc.requestCallback<Out<S[K]>>,
          ) => grpc.ClientWritableStream<In<S[K]>>
        : (
            metadata: grpc.Metadata,
            options?: Partial<grpc.CallOptions>,
          ) => grpc.ClientDuplexStream<In<S[K]>, Out<S[K]>>;
};

/** Entries of one batch message that are decoded at all (see createMessageDeserializer). */
export const DECODED_ENTRIES_LIMIT = 4 * MAX_BATCH_ENTRIES;

/** Builds the grpc-js definition of a generated service. */
export function createGrpcServiceDefinition<S extends GenServiceMethods>(
  service: GenService<S>,
): GrpcServiceDefinition<S> {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    const input = method.input;
    const output = method.output;
    // Bulk data (file chunks, command output) is encoded without protobuf-es's extra
    // copies, and responses (serialized only by the grpc-js server, which copies them
    // into its frame at once) into a reused buffer; see bytes-message-encoding.ts.
    const serializeRequest = createMessageSerializer(input);
    const serializeResponse = createMessageSerializer(output, { reuseBuffer: true });
    // Both sides decode with bounds (bounded-decode.ts). The bound is a memory guard set
    // above the protocol's own limit, so that a batch just over MAX_BATCH_ENTRIES still
    // reaches the receiver's check and gets its precise, in-band error; only a flood far
    // beyond it is cut here, as a failed call.
    const deserializeRequest = createMessageDeserializer(input, DECODED_ENTRIES_LIMIT);
    const deserializeResponse = createMessageDeserializer(output, DECODED_ENTRIES_LIMIT);
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      originalName: method.name,
      requestSerialize: (message) => serializeRequest(message as MessageShape<typeof input>),
      requestDeserialize: (bytes: Buffer) => deserializeRequest(bytes),
      responseSerialize: (message) => serializeResponse(message as MessageShape<typeof output>),
      responseDeserialize: (bytes: Buffer) => deserializeResponse(bytes),
    };
  }
  return definition as GrpcServiceDefinition<S>;
}

/** A grpc-js client constructor for a generated service. */
export function createGrpcClientConstructor<S extends GenServiceMethods>(
  service: GenService<S>,
): new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => GrpcClient<S> {
  const definition = createGrpcServiceDefinition(service) as unknown as grpc.ServiceDefinition;
  return grpc.makeGenericClientConstructor(definition, service.typeName) as unknown as new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: grpc.ClientOptions,
  ) => GrpcClient<S>;
}
