export { allocateBulkData } from "./bytes-message-encoding.js";
export {
  CAPABILITIES_METADATA_KEY,
  Capability,
  type CapabilityName,
  formatCapabilities,
  parseCapabilities,
} from "./capabilities.js";
export { cutText } from "./cut-text.js";
export {
  DATA_CONNECTION_MAGIC,
  DATA_CONNECTION_MIN_BYTES,
  DATA_CONNECTION_REQUEST_KEY,
  DATA_CONNECTION_TICKET_KEY,
  DATA_CONNECTION_WAIT_MS,
  DataConnectionError,
  dataConnectionPreamble,
  FrameWriter,
  readFrames,
  TICKET_BYTES,
} from "./data-connection.js";
export * from "./error-codes.js";
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
  DETACHED_EXITED_KEPT_MS,
  DETACHED_OUTPUT_BYTES,
  EXEC_STDIN_WINDOW_BYTES,
  HOST_HTTP2_WINDOW_BYTES,
  HTTP2_WINDOW_BYTES,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  MAX_CONCURRENT_STREAMS,
  MAX_DETACHED_COMMANDS,
  MAX_GUEST_CODE,
  MAX_GUEST_MESSAGE,
  MAX_GUEST_PATH,
  MAX_MESSAGE_BYTES,
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  MAX_QUOTED_PATH,
  MAX_STDERR_EXCERPT,
  MAX_SYNTHETIC_FILE_BYTES,
  SERVICE_NAME,
  SMALL_FILE_BYTES,
} from "./limits.js";
export { readTokenFile, TokenFileError } from "./token-file.js";
