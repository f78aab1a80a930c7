// The one failure a receiver reports about an entry. It carries both ways of naming what
// went wrong, because the two directions report in different vocabularies: the agent
// answers in-band with `code` (an errno name, PROTOCOL or SIZE_MISMATCH), the host
// library throws a CopyError with `reason`. `problem` is the bare description; each side
// puts the path in front of it in its own words.
import { ErrorCode, errorCodeOf } from "@guestkit/protocol";

/** What kind of failure, in the host's terms (the reasons of its errors). */
export type EntryErrorReason = "protocol" | "unsafe-entry" | "size-mismatch" | "destination" | "local-io";

/** Why an entry was refused or could not be written. */
export class EntryError extends Error {
  readonly reason: EntryErrorReason;
  /** The agent's in-band code: an errno name, PROTOCOL or SIZE_MISMATCH. */
  readonly code: string;
  /** The entry's path as the sender named it ("" when there is none). */
  readonly path: string;
  /** What went wrong, without the path. */
  readonly problem: string;

  constructor(reason: EntryErrorReason, code: string, path: string, problem: string, options?: ErrorOptions) {
    super(path === "" ? problem : `${path}: ${problem}`, options);
    this.name = "EntryError";
    this.reason = reason;
    this.code = code;
    this.path = path;
    this.problem = problem;
  }

  /** A framing error: a message that does not fit where it arrived. */
  static protocol(path: string, problem: string): EntryError {
    return new EntryError("protocol", ErrorCode.PROTOCOL, path, problem);
  }

  /** An entry whose header asks for something that cannot be done as asked. */
  static invalid(path: string, problem: string): EntryError {
    return new EntryError("protocol", "EINVAL", path, problem);
  }

  /** An entry refused by the path policy (a name or link that would leave where it belongs). */
  static unsafe(path: string, problem: string): EntryError {
    return new EntryError("unsafe-entry", "EINVAL", path, problem);
  }

  /** A failed file system call while writing the entry at `path` (an EntryError passes through). */
  static io(error: unknown, path: string): EntryError {
    if (error instanceof EntryError) return error;
    return new EntryError(
      "local-io",
      errorCodeOf(error),
      path,
      error instanceof Error ? error.message : String(error),
      {
        cause: error,
      },
    );
  }
}
