// What an agent supports beyond the original `guest` protocol, and how it says so.
//
// One rule for every addition: a client uses an addition only when the agent announced
// it. The agent announces once per response, in the response headers (initial metadata)
// of every call it answers, health checks included, as one header listing capability
// names. A client learns the list on each new connection (one health check before the
// connection is handed to calls, see the host's guest-connection.ts) and keeps it for that
// connection. No header means an agent that knows only the original protocol, such as the
// existing Go agent: the client then sends only the original fields and expects only the
// original answers. An agent that does not know a field drops it without a word (protobuf
// skips unknown fields, a Go oneof with an unknown case is simply empty), so nothing may
// be sent on trust.

/** Response-header key of the capability list: names separated by commas. */
export const CAPABILITIES_METADATA_KEY = "guestkit-capabilities";

/** The capabilities this version of the protocol defines. */
export const Capability = {
  /**
   * Exec understands `stdin_close`, `signal`, `resize`, `ExecStart.user` and terminal
   * sizes, and answers with `started` and `exit` before `exit_code`.
   */
  EXEC_CONTROL: "exec-control",
  /**
   * CopyToGuest takes many entries on one stream (start, data..., end, start...) and
   * reports `entries_written`; symlinks (`is_symlink`) and exact ownership (`chown`).
   * Without it: one entry per stream, the agent answers after the first `end`.
   */
  COPY_MULTI_ENTRY: "copy-multi-entry",
  /** CopyToGuestRequest.batch is accepted, and CopyFromGuestRequest.batch is honoured. */
  COPY_BATCH: "copy-batch",
  /**
   * HTTP/2 keepalive pings are accepted at any rate, with or without calls. Without it a
   * client assumes gRPC's default server policy (at most one ping per 5 minutes, and
   * none without calls; the third early ping closes the connection with GOAWAY
   * `too_many_pings`).
   */
  KEEPALIVE_PINGS: "keepalive-pings",
  /** ForwardPort is served: TCP connections to ports inside the guest. */
  PORT_FORWARD: "port-forward",
  /** Detached commands: StartDetached, ListDetached, AttachDetached, ControlDetached. */
  DETACHED: "detached",
  /**
   * Exec answers with `stdin_consumed` and reads every request as it comes, so a client
   * keeps at most EXEC_STDIN_WINDOW_BYTES of stdin unconsumed and control messages
   * (signal, resize) overtake stdin it has not sent yet.
   */
  EXEC_STDIN_CREDIT: "exec-stdin-credit",
  /**
   * The agent's HTTP/2 server schedules streams by the RFC 9218 `priority` request header,
   * so calls that carry CALL_PRIORITY (limits.ts) take turns on a busy connection.
   */
  CALL_PRIORITY: "call-priority",
  /**
   * CopyToGuest and CopyFromGuest move their messages, Exec a command's heavy output
   * and ForwardPort its bytes, on a data connection beside HTTP/2 when the client asks
   * (see data-connection.ts).
   */
  DATA_CONNECTION: "data-connection",
} as const;

export type CapabilityName = (typeof Capability)[keyof typeof Capability];

/** The header value for a list of capabilities. */
export function formatCapabilities(names: Iterable<string>): string {
  return [...names].join(",");
}

/**
 * The capabilities in a header value (or the values of a repeated header). Unknown names
 * are kept, so a newer agent's additions are visible; a value that is not a string (a
 * binary header) counts as none.
 */
export function parseCapabilities(values: ReadonlyArray<string | Buffer>): ReadonlySet<string> {
  const names = new Set<string>();
  for (const value of values) {
    if (typeof value !== "string") continue;
    for (const name of value.split(",")) {
      const trimmed = name.trim();
      // A guest is not trusted to keep this short: a bound on names and their number.
      if (trimmed !== "" && trimmed.length <= 64 && names.size < 64) names.add(trimmed);
    }
  }
  return names;
}
