// The public surface of @guestkit/host: a client, its errors, targets, and the types that
// its methods take and return. Everything else (dialing, the handshake, the copy engines,
// the CLI) is internal and may change between versions.
export { CopyError, type CopyErrorDetails } from "./copy-error.js";
export type { CopyFromOptions } from "./copy-from.js";
export type { CopyToOptions } from "./copy-to.js";
export type { CopyOptions, CopyProgress, CopyResult, SkippedEntry } from "./copy-types.js";
export type {
  AttachHandle,
  AttachOptions,
  DetachedInfo,
  DetachedStarted,
  StartDetachedOptions,
} from "./detached.js";
export type { ExecHandle, ExecOutput, ExitStatus } from "./exec-handle.js";
export type { ExecOptions } from "./exec-request.js";
export { type ConnectOptions, createGuestClient, type GuestClient, type GuestClientOptions } from "./guest-client.js";
export type { GuestConnectionOptions } from "./guest-connection.js";
export { Code, GuestError, type GuestErrorReason } from "./guest-error.js";
export type { ForwardListener, ForwardPortOptions, ListenForwardOptions } from "./port-forward.js";
export { CommandFailedError, type RunOptions, type RunResult } from "./run.js";
export type { GuestFileType, GuestStat, GuestStatFound, StatOptions } from "./stat.js";
export { formatTarget, type GuestTarget, parseTarget } from "./target.js";
export type { WaitUntilReadyOptions } from "./wait-until-ready.js";
