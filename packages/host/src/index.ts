// The public surface of @guestkit/host: a client, its errors, targets, and the types that
// its methods take and return. Everything else (dialing, the handshake, the copy engines,
// the CLI) is internal and may change between versions.
export { CopyError, type CopyErrorDetails } from "./copy/copy-error.js";
export type { CopyFromOptions } from "./copy/copy-from.js";
export type { CopyToOptions } from "./copy/copy-to.js";
export type { CopyOptions, CopyProgress, CopyResult, SkippedEntry } from "./copy/copy-types.js";
export type {
  AttachHandle,
  AttachOptions,
  DetachedInfo,
  DetachedStarted,
  StartDetachedOptions,
} from "./exec/detached.js";
export type { ExecHandle, ExecOutput, ExitStatus } from "./exec/exec-handle.js";
export type { ExecOptions } from "./exec/exec-request.js";
export { CommandFailedError, type RunOptions, type RunResult } from "./exec/run.js";
export { type ConnectOptions, createGuestClient, type GuestClient, type GuestClientOptions } from "./guest-client.js";
export { Code, GuestError, type GuestErrorReason } from "./guest-error.js";
export type { ForwardListener, ForwardPortOptions, ListenForwardOptions } from "./port-forward.js";
export type { GuestFileType, GuestStat, GuestStatFound, StatOptions } from "./stat.js";
export type { GuestConnectionOptions } from "./transport/guest-connection.js";
export { formatTarget, type GuestTarget, parseTarget } from "./transport/target.js";
export type { WaitUntilReadyOptions } from "./wait-until-ready.js";
