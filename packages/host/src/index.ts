export { type DialWithRetryOptions, dialWithRetry, retryDelayMs } from "./connect-retry.js";
export { CopyError, type CopyErrorDetails } from "./copy-error.js";
export { type CopyFromOptions, copyFrom } from "./copy-from.js";
export { type CopyToOptions, copyTo } from "./copy-to.js";
export {
  type CopyOptions,
  type CopyProgress,
  type CopyResult,
  MAX_SKIPPED_LISTED,
  type SkippedEntry,
} from "./copy-types.js";
export type {
  AttachHandle,
  AttachOptions,
  DetachedInfo,
  DetachedStarted,
  StartDetachedOptions,
} from "./detached.js";
export {
  DEFAULT_DIAL_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  type DialOptions,
  dial,
} from "./dial.js";
export type { ExecHandle, ExecOutput, ExitStatus } from "./exec-handle.js";
export { type ExecOptions, signalName } from "./exec-request.js";
export { type ConnectOptions, createGuestClient, type GuestClient, type GuestClientOptions } from "./guest-client.js";
export type { GuestConnectionOptions } from "./guest-connection.js";
export { Code, GuestError, type GuestErrorReason, isRetriableConnectError } from "./guest-error.js";
export {
  type HybridVsockHandshakeOptions,
  type HybridVsockHandshakeResult,
  hybridVsockHandshake,
} from "./hybrid-vsock-handshake.js";
export type { ForwardListener, ForwardPortOptions, ListenForwardOptions } from "./port-forward.js";
export { CommandFailedError, DEFAULT_MAX_OUTPUT_BYTES, type RunOptions, type RunResult } from "./run.js";
export { splice } from "./socket-splice.js";
export type { GuestFileType, GuestStat, GuestStatFound, StatOptions } from "./stat.js";
export { formatTarget, type GuestTarget, parseTarget, TARGET_FORMS } from "./target.js";
export { dialVsock, type VsockDialOptions } from "./vsock-dial.js";
export type { WaitUntilReadyOptions } from "./wait-until-ready.js";
