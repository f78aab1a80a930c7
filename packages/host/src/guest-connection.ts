// One HTTP/2 connection to an agent, shared by every call of a client, set up through
// dial() (via the bridge) and re-established with a fresh connection when it is gone.
//
// grpc-js would reconnect by itself with its own backoff (1 s growing to 120 s) and
// turn dial errors into strings. Instead each connection attempt here is one fresh
// grpc-js channel whose single connection goes through dial(): the library's retry
// schedule applies, the real dial error is kept, and a channel that failed is closed
// so that nothing keeps dialing a dead VM in the background.
import * as grpc from "@grpc/grpc-js";
import { GuestServiceClient, HTTP2_WINDOW_BYTES, MAX_MESSAGE_BYTES } from "@guestkit/protocol";
import { service as healthService } from "grpc-health-check";
import { capTimeouts, retryConnect } from "./connect-retry.js";
import { DEFAULT_DIAL_TIMEOUT_MS, DEFAULT_HANDSHAKE_TIMEOUT_MS, type DialOptions, dial } from "./dial.js";
import { type DialBridge, openDialBridge } from "./dial-bridge.js";
import { Code, cancelledError, GuestError, toGuestError } from "./guest-error.js";
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
  /** Interval of HTTP/2 keepalive pings, with or without calls running. Default 5 s. */
  keepaliveMs?: number;
  /**
   * A ping unanswered for this long drops the connection and fails the calls on it, so a
   * hung VM is noticed within keepaliveMs + keepaliveTimeoutMs. Default 15 s: an agent
   * whose event loop is busy starting hundreds of commands at once (measured: up to ~4 s
   * for 500 on 2 cores) must not be taken for dead.
   */
  keepaliveTimeoutMs?: number;
  /** Sent as `authorization: Bearer <token>` on every call (agents started with --token-file). */
  token?: string;
}

/** A live channel and the clients on it. */
export interface GuestChannel {
  /** The raw grpc-js client of guest.GuestService. */
  readonly guest: GuestServiceClient;
  /** A generic client on the same channel, for grpc.health.v1.Health. */
  readonly health: grpc.Client;
  /** Metadata every call must carry (the token, if any). */
  metadata(): grpc.Metadata;
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

const HealthClient = grpc.makeGenericClientConstructor(healthService, "Health");

const DEFAULT_KEEPALIVE_MS = 5000;
const DEFAULT_KEEPALIVE_TIMEOUT_MS = 15_000;

// HTTP/2 settings exchange after the byte stream is up: a peer that accepted the bytes
// but is not a gRPC server would otherwise keep an attempt waiting forever.
const SESSION_SETUP_TIMEOUT_MS = 5000;

/** See the file comment. */
export class GuestConnection {
  readonly target: GuestTarget;
  readonly #options: GuestConnectionOptions;
  readonly #context: string;
  #bridge: Promise<DialBridge> | undefined;
  #current: { channel: grpc.Channel; clients: GuestChannel } | undefined;
  #attempt: Promise<GuestChannel> | undefined;
  // What the bridge's next dial uses, and which attempt it belongs to: a dial that an
  // older, abandoned attempt started must not pass its error off as the current one's.
  // Only the attempt in progress may dial, and only once: nothing else reaches the VM.
  #attemptDial: DialOptions = {};
  #attemptSeq = 0;
  #mayDial = false;
  #lastDialError: GuestError | undefined;
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

  /** Closes the channel and the bridge; calls still running fail. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#current?.channel.close();
    this.#current = undefined;
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
    if (!this.#attempt) {
      this.#attempt = this.#connectOnce(remainingMs).finally(() => {
        this.#attempt = undefined;
      });
    }
    return raceAbort(this.#attempt, signal, this.#context);
  }

  async #connectOnce(remainingMs: number | undefined): Promise<GuestChannel> {
    const bridge = await this.#openBridge();
    if (this.#closed) throw this.#closedError();
    this.#current?.channel.close();
    this.#current = undefined;
    this.#attemptDial = capTimeouts(this.#options, undefined, remainingMs);
    this.#attemptSeq += 1;
    this.#lastDialError = undefined;
    this.#mayDial = true;
    const channel = new grpc.Channel(`unix:${bridge.path}`, grpc.credentials.createInsecure(), this.#channelOptions());
    const clients = this.#clientsOn(channel);
    this.#current = { channel, clients };
    const budget =
      (this.#attemptDial.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS) +
      (this.target.kind === "hvsock" ? (this.#attemptDial.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS) : 0) +
      SESSION_SETUP_TIMEOUT_MS;
    try {
      await waitUntilConnected(channel, Date.now() + budget);
      this.#mayDial = false;
      return clients;
    } catch (error) {
      this.#mayDial = false;
      if (this.#current?.channel === channel) this.#current = undefined;
      channel.close();
      if (this.#closed) throw this.#closedError();
      throw (
        this.#lastDialError ??
        new GuestError(
          Code.UNAVAILABLE,
          `connected, but no gRPC session could be set up: ${(error as Error).message}`,
          { reason: "connection-failed", cause: error, context: this.#context },
        )
      );
    }
  }

  #openBridge(): Promise<DialBridge> {
    if (!this.#bridge) {
      this.#bridge = openDialBridge(async (signal) => {
        if (!this.#mayDial) throw new Error("no connection attempt in progress");
        this.#mayDial = false;
        const seq = this.#attemptSeq;
        try {
          return await dial(this.target, { ...this.#attemptDial, signal });
        } catch (error) {
          if (seq === this.#attemptSeq) this.#lastDialError = toGuestError(error, this.#context);
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

  #channelOptions(): grpc.ChannelOptions {
    return {
      "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
      // The window this side grants the agent, per stream and for the connection (see
      // limits.ts): with HTTP/2's 64 KiB default a download waits a round trip every 64 KiB
      // (bench/: copyFrom of 256 MiB, median of 6 alternated runs, 118 -> 179 MiB/s). The
      // connection window also caps what a guest can make this process buffer at once.
      "grpc-node.flow_control_window": HTTP2_WINDOW_BYTES,
      "grpc.keepalive_time_ms": this.#options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS,
      "grpc.keepalive_timeout_ms": this.#options.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS,
      // Pings while idle too: a connection kept across a VM's death is found dead before
      // the next call is sent on it. (The agent permits them.)
      "grpc.keepalive_permit_without_calls": 1,
      // Each attempt is a fresh channel (see the file comment): the global pool would
      // hand a new channel the old one's failed subchannel.
      "grpc.use_local_subchannel_pool": 1,
      // ...and grpc-js's own reconnect must never fire: in grpc-js 1.14 a subchannel that
      // failed keeps its backoff timer after its channel is closed, and reconnects when
      // it ends. The timer is unref'd, so a day-long backoff costs nothing.
      "grpc.initial_reconnect_backoff_ms": NEVER_MS,
      "grpc.max_reconnect_backoff_ms": NEVER_MS,
    };
  }

  #clientsOn(channel: grpc.Channel): GuestChannel {
    const insecure = grpc.credentials.createInsecure();
    const token = this.#options.token;
    return {
      guest: new GuestServiceClient("bridge", insecure, { channelOverride: channel }),
      health: new HealthClient("bridge", insecure, { channelOverride: channel }),
      metadata() {
        const metadata = new grpc.Metadata();
        if (token) metadata.set("authorization", `Bearer ${token}`);
        return metadata;
      },
    };
  }

  #closedError(): GuestError {
    return new GuestError(Code.CANCELLED, "the client is closed", { reason: "closed", context: this.#context });
  }
}

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
