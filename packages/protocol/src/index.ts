export { allocateBulkData } from "./bytes-message-encoding.js";
export { COPY_BATCH_METADATA_KEY, COPY_BATCH_METADATA_VALUE } from "./copy-batch.js";
export { EXEC_STDIN_CREDIT_CAPABILITY } from "./exec-stdin-credit.js";
export * from "./gen/guest/guest_pb.js";
export * from "./gen/health/v1/health_pb.js";
export {
  createGrpcClientConstructor,
  createGrpcServiceDefinition,
  DECODED_ENTRIES_LIMIT,
  type GrpcClient,
  type GrpcServerHandlers,
  type GrpcServiceDefinition,
} from "./grpc-service.js";
export {
  GuestServiceClient,
  type GuestServiceHandlers,
  guestServiceDefinition,
} from "./guest-service.js";
export {
  CALL_PRIORITY,
  CHUNK_SIZE,
  DEFAULT_PORT,
  EXEC_STDIN_WINDOW_BYTES,
  HOST_HTTP2_WINDOW_BYTES,
  HTTP2_WINDOW_BYTES,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  MAX_CONCURRENT_STREAMS,
  MAX_MESSAGE_BYTES,
  SERVICE_NAME,
  SMALL_FILE_BYTES,
} from "./limits.js";
