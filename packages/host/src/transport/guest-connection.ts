// One HTTP/2 connection to an agent, shared by every call of a client, and re-established
// with a fresh connection when it is gone.
//
// grpc-js would reconnect by itself with its own backoff (1 s growing to 120 s) and
// turn dial errors into strings. Instead each connection attempt here is one fresh
// grpc-js channel with a single connection: the library's retry schedule applies, the
// real dial error is kept, and a channel that failed is closed so that nothing keeps
// dialing a dead VM in the background.
//
// Which way each target kind's bytes take (one dialer, dial.ts, stays the reference for
// what reaching an agent means, and gives the errors):
// - unix, tcp: grpc-js opens the socket itself. A bridge would cost an extra copy of
//   every byte and a hop per round trip (bench/README.md). grpc-js reports a failed
//   connect only as text, so a failure before any socket connected is diagnosed with
//   one dial() of the same address, which gives the errno.
// - hvsock: grpc-js opens the VMM's Unix socket, and the connector hook
//   (grpc-connector.ts) runs the same hybridVsockHandshake as dial() on it before
//   HTTP/2 starts, so its errors (no listener, timeout, garbage) come through as they are.
// - vsock: grpc-js cannot open AF_VSOCK, so it connects to a private local bridge whose
//   connections are spliced to dial() (dial-bridge.ts).
//
// What the agent supports is learned once per connection, before any call uses it: one
// health check, whose response headers carry the agent's capability list (see
// packages/protocol/src/capabilities.ts). An agent without the header (the existing Go
// agent) answers UNIMPLEMENTED or SERVING without it, and every call on that connection
// then speaks only the original protocol.
//
// Noticing a hung VM depends on what the agent accepts:
// - an agent that announced `keepalive-pings` gets HTTP/2 pings every keepaliveMs, with
//   or without calls; an unanswered ping drops the connection after keepaliveTimeoutMs.
// - any other gRPC server is assumed to enforce gRPC's default ping policy (one ping per
//   5 minutes, none without calls; the third early ping closes the connection with
//   GOAWAY too_many_pings, failing every call on it). It gets no pings at all: a StatPath
//   of "/" every keepaliveMs is the liveness check (a call is ordinary traffic to any
//   server), and one unanswered within keepaliveTimeoutMs drops the connection.
// Every connection starts as if the agent accepted pings (the first ping is due only
// keepaliveMs later, long after the health check answered). When the check says
// otherwise, that connection is replaced at once by one without pings, before any call
// has used it; the client remembers the kind for its next connections.
import type { Socket } from "node:net";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CALL_PRIORITY,
  CAPABILITIES_METADATA_KEY,
  Capability,
  type CapabilityName,
  createGrpcClientConstructor,
  createGrpcServiceDefinition,
  GuestServiceClient,
  Health,
  HealthCheckRequestSchema,
  HOST_HTTP2_WINDOW_BYTES,
  MAX_MESSAGE_BYTES,
  parseCapabilities,
  StatPathRequestSchema,
} from "@guestkit/protocol";
import { Code, cancelledError, errorFromStatus, GuestError, toGuestError } from "../guest-error.js";
import { capTimeouts, MIN_ATTEMPT_MS, retryConnect } from "./connect-retry.js";
import { openDataConnection } from "./data-connection.js";
import { DEFAULT_DIAL_TIMEOUT_MS, DEFAULT_HANDSHAKE_TIMEOUT_MS, type DialOptions, dial } from "./dial.js";
import { type DialBridge, openDialBridge } from "./dial-bridge.js";
import { createConnectorCredentials } from "./grpc-connector.js";
import { hybridVsockHandshake } from "./hybrid-vsock-handshake.js";
import { formatTarget, type GuestTarget } from "./target.js";

/** Options of a connection (and of createGuestClient). */
export interface GuestConnectionOptions {
  /**
   * How long to keep retrying connection-level failures (no socket, refused, nothing
   * listening on the port, handshake timeout) before a call gives up, for an agent that
   * is still booting. Default 0: one attempt. Calls never re-run once sent.
   */
  connectTimeoutMs?: number;
  /** Time to get a connected socket, per attempt. Default 5 s. */
  dialTimeoutMs?: number;
  /** hvsock: time for the VMM to answer CONNECT, per attempt. Default 5 s. */
  handshakeTimeoutMs?: number;
  /**
   * Interval of the liveness checks, with or without calls running: HTTP/2 pings to an
   * agent that accepts them (guestkit's), a StatPath call to any other. Default 5 s.
   */
  keepaliveMs?: number;
  /**
   * A ping or check unanswered for this long drops the connection and fails the calls on
   * it, so a hung VM is noticed within keepaliveMs + keepaliveTimeoutMs. Default 15 s: an
   * agent whose event loop is busy starting hundreds of commands at once (measured: up
   * to ~4 s for 500 on 2 cores) must not be taken for dead.
   */
  keepaliveTimeoutMs?: number;
  /** Sent as `authorization: Bearer <token>` on every call (agents started with --token-file). */
  token?: string;
  /**
   * Whether bulk copies, heavy command output and port forwards may take a data
   * connection beside the call when the agent offers them (guest.proto, "Data
   * connections"): another connection to the agent, opened the same way. Default true;
   * false keeps everything on the one HTTP/2 connection.
   */
  dataConnections?: boolean;
  /**
   * Told what could not be done as asked but did not fail the call: what an agent without
   * guestkit's additions cannot do (resize a terminal, deliver EOF to one...). Default:
   * process.emitWarning, type "GuestkitWarning".
   */
  onWarning?: (message: string) => void;
}

/** A live channel and the clients on it. */
export interface GuestChannel {
  /** The raw grpc-js client of guest.GuestService. */
  readonly guest: GuestServiceClient;
  /** A generic client on the same channel, for grpc.health.v1.Health. */
  readonly health: grpc.Client;
  /** Metadata every call must carry (the token, if any). */
  metadata(): grpc.Metadata;
  /** What the agent on this connection announced (empty for an agent without guestkit's additions). */
  readonly capabilities: ReadonlySet<string>;
  /** Whether the agent announced `capability`: additions may be used only then. */
  has(capability: CapabilityName): boolean;
  /** Reports what could not be done as asked (see GuestConnectionOptions.onWarning). */
  warn(message: string): void;
  /** Opens a data connection to the same agent and presents `ticket` (see data-connection.ts). */
  openDataConnection(ticket: string, signal?: AbortSignal): Promise<Socket>;
}

/** Options of GuestConnection.ready(). */
export interface ReadyOptions {
  /** Retry until this time (Date.now() ms). Default: now + connectTimeoutMs. */
  deadline?: number;
  signal?: AbortSignal;
}

// A day: far beyond any client's life between attempts, and within what a Node timer
// can wait once grpc-js has added its jitter.
const NEVER_MS = 24 * 60 * 60 * 1000;

const HealthClient = createGrpcClientConstructor(Health);
const healthCheck = createGrpcServiceDefinition(Health).check;

const DEFAULT_KEEPALIVE_MS = 5000;
const DEFAULT_KEEPALIVE_TIMEOUT_MS = 15_000;

// HTTP/2 settings exchange after the byte stream is up: a peer that accepted the bytes
// but is not a gRPC server would otherwise keep an attempt waiting forever.
const SESSION_SETUP_TIMEOUT_MS = 5000;

// One connection attempt: what it may use, and what became of it.
interface Attempt {
  // The socket HTTP/2 runs on, once the connector has it: destroying it drops the
  // connection and fails every call on it (a liveness check that went unanswered).
  socket: Socket | undefined;
  readonly dial: DialOptions;
  // Aborted when the attempt is over: a handshake still running for it stops.
  readonly controller: AbortController;
  // A socket to the agent (or the VMM) connected for this attempt.
  reached: boolean;
  // The byte stream is ready for HTTP/2 (for hvsock: the VMM answered CONNECT).
  prepared: boolean;
  // Why it failed, when the dialer knows better than grpc-js.
  error: GuestError | undefined;
  // Only an attempt in progress may reach the VM: nothing reconnects behind the library's back.
  live: boolean;
}

/** See the file comment. */
export class GuestConnection {
  readonly target: GuestTarget;
  readonly #options: GuestConnectionOptions;
  readonly #context: string;
  #bridge: Promise<DialBridge> | undefined;
  #current: { channel: grpc.Channel; clients: GuestChannel; stopChecks: () => void } | undefined;
  // The channel of the attempt in progress, until it is current: close() closes it too.
  #opening: grpc.Channel | undefined;
  // Whether the next connection should send HTTP/2 pings: what the last agent announced.
  #pings = true;
  #pending: Promise<GuestChannel> | undefined;
  // The attempt in progress (or the last one); the vsock bridge dials for it.
  #attempt: Attempt | undefined;
  #closed = false;

  constructor(target: GuestTarget, options: GuestConnectionOptions = {}) {
    this.target = target;
    this.#options = options;
    this.#context = formatTarget(target);
  }

  /** The target as a string, for messages. */
  get context(): string {
    return this.#context;
  }

  /**
   * Resolves with a channel that is connected now, connecting (and retrying
   * connection-level failures until the deadline) when it is not.
   */
  ready(options: ReadyOptions = {}): Promise<GuestChannel> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const current = this.#current;
    if (current && current.channel.getConnectivityState(false) === grpc.connectivityState.READY) {
      return Promise.resolve(current.clients);
    }
    return retryConnect(({ signal, remainingMs }) => this.#join(signal, remainingMs), {
      deadline: options.deadline ?? Date.now() + (this.#options.connectTimeoutMs ?? 0),
      context: this.#context,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /** Closes the channel and the bridge (if any); calls still running fail. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#attempt) endAttempt(this.#attempt);
    this.#opening?.close();
    this.#dropCurrent();
    const bridge = this.#bridge;
    this.#bridge = undefined;
    if (bridge) await (await bridge.catch(() => undefined))?.close();
  }

  // Attempts are shared: concurrent callers wait on the one in flight.
  #join(signal: AbortSignal | undefined, remainingMs: number | undefined): Promise<GuestChannel> {
    const current = this.#current;
    if (current && current.channel.getConnectivityState(false) === grpc.connectivityState.READY) {
      return Promise.resolve(current.clients);
    }
    if (!this.#pending) {
      this.#pending = this.#connectOnce(remainingMs).finally(() => {
        this.#pending = undefined;
      });
    }
    return raceAbort(this.#pending, signal, this.#context);
  }

  // One attempt; when the agent turns out not to accept pings (or to accept them after
  // all), the connection is replaced once by one of the right kind, within the same budget.
  async #connectOnce(remainingMs: number | undefined): Promise<GuestChannel> {
    const startedAt = Date.now();
    const first = await this.#openChannel(remainingMs, this.#pings);
    if (first.has(Capability.KEEPALIVE_PINGS) === this.#pings) return first;
    this.#pings = !this.#pings;
    const left = remainingMs === undefined ? undefined : Math.max(1, remainingMs - (Date.now() - startedAt));
    return this.#openChannel(left, this.#pings);
  }

  async #openChannel(remainingMs: number | undefined, pings: boolean): Promise<GuestChannel> {
    const attempt: Attempt = {
      socket: undefined,
      dial: capTimeouts(this.#options, undefined, remainingMs),
      controller: new AbortController(),
      reached: false,
      prepared: false,
      error: undefined,
      live: true,
    };
    const address = this.target.kind === "vsock" ? `unix:${(await this.#openBridge()).path}` : grpcAddress(this.target);
    if (this.#closed) throw this.#closedError();
    if (this.#attempt) endAttempt(this.#attempt);
    this.#attempt = attempt;
    this.#dropCurrent();
    const credentials = createConnectorCredentials((socket) => this.#prepare(attempt, socket));
    const channel = new grpc.Channel(address, credentials, this.#channelOptions(pings));
    this.#opening = channel;
    const dialTimeoutMs = attempt.dial.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
    // The whole attempt (connect, handshake, HTTP/2 set-up, the capability check) ends by
    // this time: a caller's deadline bounds it, past by at most MIN_ATTEMPT_MS (an attempt
    // started just before the deadline still gets that long to fail for its real reason).
    const fullBudget =
      dialTimeoutMs +
      (this.target.kind === "hvsock" ? (attempt.dial.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS) : 0) +
      SESSION_SETUP_TIMEOUT_MS;
    const budget = remainingMs === undefined ? fullBudget : Math.min(fullBudget, Math.max(remainingMs, MIN_ATTEMPT_MS));
    const deadline = Date.now() + budget;
    // grpc-js's own connect has no timeout (the bridge's dial() has its own).
    const dialTimer =
      this.target.kind === "vsock"
        ? undefined
        : setTimeout(() => {
            if (attempt.reached || !attempt.live) return;
            attempt.error = new GuestError(Code.UNAVAILABLE, `could not connect within ${dialTimeoutMs} ms`, {
              reason: "dial-timeout",
              context: this.#context,
            });
            channel.close();
          }, dialTimeoutMs);
    let clients: GuestChannel;
    try {
      await waitUntilConnected(channel, deadline);
      const capabilities = await this.#askCapabilities(channel, deadline);
      clients = this.#clientsOn(channel, capabilities);
    } catch (error) {
      endAttempt(attempt);
      channel.close();
      if (this.#closed) throw this.#closedError();
      if (attempt.error) throw attempt.error;
      // The caller's deadline came while the VMM still had not answered CONNECT: that,
      // not the HTTP/2 set-up, is why (the handshake's own timer was capped to the same time).
      if (attempt.reached && !attempt.prepared && this.target.kind === "hvsock") {
        const port = this.target.port;
        const waited = attempt.dial.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
        throw new GuestError(Code.UNAVAILABLE, `no answer to CONNECT ${port} within ${waited} ms`, {
          reason: "handshake-timeout",
          cause: error,
          context: this.#context,
        });
      }
      if (error instanceof GuestError) throw error;
      if (!attempt.reached && this.target.kind !== "vsock") await this.#diagnose(attempt);
      throw new GuestError(
        Code.UNAVAILABLE,
        `connected, but no gRPC session could be set up: ${(error as Error).message}`,
        { reason: "connection-failed", cause: error, context: this.#context },
      );
    } finally {
      clearTimeout(dialTimer);
      attempt.live = false;
      attempt.controller.abort();
      if (this.#opening === channel) this.#opening = undefined;
    }
    if (this.#closed) {
      channel.close();
      throw this.#closedError();
    }
    const stopChecks = pings ? () => {} : this.#startLivenessChecks(clients, attempt);
    this.#current = { channel, clients, stopChecks };
    return clients;
  }

  // The health check that tells what the agent supports (see the file comment). Any
  // answer from the agent, an error status included, is an answer: only one that does
  // not come (the connection failed, the time ran out) or a refused token fails.
  #askCapabilities(channel: grpc.Channel, deadline: number): Promise<ReadonlySet<string>> {
    const probe = new HealthClient("bridge", grpc.credentials.createInsecure(), { channelOverride: channel });
    const metadata = new grpc.Metadata();
    if (this.#options.token) metadata.set("authorization", `Bearer ${this.#options.token}`);
    return new Promise((resolve, reject) => {
      let headers: grpc.Metadata | undefined;
      const call = probe.makeUnaryRequest(
        healthCheck.path,
        healthCheck.requestSerialize,
        healthCheck.responseDeserialize,
        create(HealthCheckRequestSchema, { service: "" }),
        metadata,
        { deadline: Math.max(deadline, Date.now() + 1) },
        (error) => {
          if (error && ANSWER_IS_NO_ANSWER.has(error.code)) {
            reject(
              error.code === Code.DEADLINE_EXCEEDED
                ? new GuestError(Code.UNAVAILABLE, "connected, but the agent did not answer in time", {
                    reason: "connection-failed",
                    cause: error,
                    context: this.#context,
                  })
                : errorFromStatus(error, this.#context),
            );
            return;
          }
          resolve(parseCapabilities(headers?.get(CAPABILITIES_METADATA_KEY) ?? []));
        },
      );
      call.on("metadata", (received: grpc.Metadata) => {
        headers = received;
      });
    });
  }

  // Liveness checks for an agent that gets no pings: a StatPath of "/" every keepaliveMs.
  // One unanswered within keepaliveTimeoutMs drops the connection. Returns the stopper.
  #startLivenessChecks(clients: GuestChannel, attempt: Attempt): () => void {
    const intervalMs = this.#options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
    const timeoutMs = this.#options.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const schedule = () => {
      if (stopped) return;
      timer = setTimeout(check, intervalMs);
      // The checks must not keep a program alive that is done with its client.
      timer.unref();
    };
    const check = () => {
      clients.guest.statPath(
        create(StatPathRequestSchema, { path: "/" }),
        clients.metadata(),
        { deadline: Date.now() + timeoutMs },
        (error) => {
          if (stopped) return;
          if (error?.code === Code.DEADLINE_EXCEEDED) {
            stopped = true;
            // Every call on the connection fails (UNAVAILABLE, connection-lost); the
            // next call connects afresh.
            attempt.socket?.destroy();
            return;
          }
          schedule();
        },
      );
    };
    schedule();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  #dropCurrent(): void {
    this.#current?.stopChecks();
    this.#current?.channel.close();
    this.#current = undefined;
  }

  // What the connector does with each socket grpc-js connected for an attempt.
  async #prepare(attempt: Attempt, socket: Socket): Promise<Socket> {
    if (!attempt.live) {
      socket.destroy();
      throw new Error("no connection attempt in progress");
    }
    attempt.reached = true;
    attempt.socket = socket;
    if (this.target.kind !== "hvsock") {
      attempt.prepared = true;
      return socket;
    }
    try {
      await hybridVsockHandshake(socket, this.target.port, {
        timeoutMs: attempt.dial.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
        context: this.#context,
        signal: attempt.controller.signal,
      });
      attempt.prepared = true;
      return socket;
    } catch (error) {
      attempt.error ??= toGuestError(error, this.#context);
      throw error;
    }
  }

  // grpc-js failed before any socket connected and says why only in text: one dial of
  // the same address (for hvsock, just the VMM's socket, no CONNECT) gets the errno.
  async #diagnose(attempt: Attempt): Promise<void> {
    const probe: GuestTarget = this.target.kind === "hvsock" ? { kind: "unix", path: this.target.path } : this.target;
    let socket: Socket;
    try {
      socket = await dial(probe, { dialTimeoutMs: attempt.dial.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS });
    } catch (caught) {
      const error = toGuestError(caught, this.#context);
      throw new GuestError(error.code, error.details, { reason: error.reason, cause: caught, context: this.#context });
    }
    // It answers now: the agent came up in between, and the next attempt will find it.
    socket.destroy();
  }

  #openBridge(): Promise<DialBridge> {
    if (!this.#bridge) {
      this.#bridge = openDialBridge(async (signal) => {
        const attempt = this.#attempt;
        // One dial per attempt, and only while it is in progress.
        if (!attempt?.live || attempt.reached) throw new Error("no connection attempt in progress");
        attempt.reached = true;
        try {
          return await dial(this.target, { ...attempt.dial, signal });
        } catch (error) {
          attempt.error ??= toGuestError(error, this.#context);
          throw error;
        }
      });
      // A failed open is retried by the next attempt.
      this.#bridge.catch(() => {
        this.#bridge = undefined;
      });
    }
    return this.#bridge;
  }

  #channelOptions(pings: boolean): grpc.ChannelOptions {
    const keepalive: grpc.ChannelOptions = pings
      ? {
          "grpc.keepalive_time_ms": this.#options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS,
          "grpc.keepalive_timeout_ms": this.#options.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS,
          // Pings while idle too: a connection kept across a VM's death is found dead
          // before the next call is sent on it. (The agent said it permits them.)
          "grpc.keepalive_permit_without_calls": 1,
        }
      : {};
    return {
      ...keepalive,
      "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
      // The window this side grants the agent: twice HTTP/2's 64 KiB default, and small
      // enough that the connection cannot freeze (see HOST_HTTP2_WINDOW_BYTES). A host
      // socket that reads ahead into memory (a Duplex in front of the socket) made 8 MiB
      // safe, but node:http2 then moves every byte through JavaScript, and copyFrom
      // measured no faster.
      "grpc-node.flow_control_window": HOST_HTTP2_WINDOW_BYTES,
      // Each attempt is a fresh channel (see the file comment): the global pool would
      // hand a new channel the old one's failed subchannel.
      "grpc.use_local_subchannel_pool": 1,
      // ...and grpc-js's own reconnect must never fire: in grpc-js 1.14 a subchannel that
      // failed keeps its backoff timer after its channel is closed, and reconnects when
      // it ends. The timer is unref'd, so a day-long backoff costs nothing.
      "grpc.initial_reconnect_backoff_ms": NEVER_MS,
      "grpc.max_reconnect_backoff_ms": NEVER_MS,
      // A tcp: target is reached directly: grpc-js must not route it through an HTTP
      // proxy it found in the environment.
      "grpc.enable_http_proxy": 0,
    };
  }

  #clientsOn(channel: grpc.Channel, capabilities: ReadonlySet<string>): GuestChannel {
    const insecure = grpc.credentials.createInsecure();
    const token = this.#options.token;
    const dialOptions: DialOptions = {
      ...(this.#options.dialTimeoutMs === undefined ? {} : { dialTimeoutMs: this.#options.dialTimeoutMs }),
      ...(this.#options.handshakeTimeoutMs === undefined
        ? {}
        : { handshakeTimeoutMs: this.#options.handshakeTimeoutMs }),
    };
    return {
      capabilities,
      has: (capability) =>
        capabilities.has(capability) &&
        (capability !== Capability.DATA_CONNECTION || this.#options.dataConnections !== false),
      openDataConnection: (ticket, signal) =>
        openDataConnection(this.target, ticket, { ...dialOptions, ...(signal ? { signal } : {}) }),
      warn: this.#options.onWarning ?? ((message) => process.emitWarning(message, "GuestkitWarning")),
      guest: new GuestServiceClient("bridge", insecure, { channelOverride: channel }),
      health: new HealthClient("bridge", insecure, { channelOverride: channel }),
      metadata() {
        const metadata = new grpc.Metadata();
        if (token) metadata.set("authorization", `Bearer ${token}`);
        // Calls on the connection take turns (see CALL_PRIORITY), where the agent said it
        // schedules by the header.
        if (capabilities.has(Capability.CALL_PRIORITY)) metadata.set("priority", CALL_PRIORITY);
        return metadata;
      },
    };
  }

  #closedError(): GuestError {
    return new GuestError(Code.CANCELLED, "the client is closed", { reason: "closed", context: this.#context });
  }
}

// Statuses of the capability check that are not an answer from the agent.
const ANSWER_IS_NO_ANSWER: ReadonlySet<number> = new Set([
  Code.UNAVAILABLE,
  Code.DEADLINE_EXCEEDED,
  Code.CANCELLED,
  Code.UNAUTHENTICATED,
  Code.PERMISSION_DENIED,
]);

// READY resolves; TRANSIENT_FAILURE, SHUTDOWN or the deadline rejects.
function waitUntilConnected(channel: grpc.Channel, deadline: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (error?: Error) => {
      if (error) {
        reject(new Error("timed out"));
        return;
      }
      let state: grpc.connectivityState;
      try {
        state = channel.getConnectivityState(true);
      } catch (caught) {
        reject(caught as Error);
        return;
      }
      if (state === grpc.connectivityState.READY) resolve();
      else if (state === grpc.connectivityState.TRANSIENT_FAILURE) reject(new Error("connection failed"));
      else if (state === grpc.connectivityState.SHUTDOWN) reject(new Error("channel closed"));
      else {
        try {
          channel.watchConnectivityState(state, deadline, check);
        } catch (caught) {
          reject(caught as Error);
        }
      }
    };
    check();
  });
}

// The address grpc-js connects to for a target it opens itself (not vsock).
function grpcAddress(target: Exclude<GuestTarget, { kind: "vsock" }>): string {
  switch (target.kind) {
    case "unix":
    case "hvsock":
      return `unix:${target.path}`;
    case "tcp":
      return target.host.includes(":") ? `dns:[${target.host}]:${target.port}` : `dns:${target.host}:${target.port}`;
  }
}

function endAttempt(attempt: Attempt): void {
  attempt.live = false;
  attempt.controller.abort();
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, context: string): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(cancelledError(signal, context));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(cancelledError(signal, context));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
