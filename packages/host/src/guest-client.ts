// createGuestClient: the library's entry point. One client = one target and one shared
// connection; everything a CLI or a program does goes through its methods.
import type { Duplex, Writable } from "node:stream";
import type { GuestServiceClient } from "@guestkit/protocol";
import { type CopyFromOptions, copyFrom } from "./copy/copy-from.js";
import { type CopyToOptions, copyTo } from "./copy/copy-to.js";
import type { CopyResult } from "./copy/copy-types.js";
import {
  type AttachHandle,
  type AttachOptions,
  attachDetached,
  controlDetached,
  type DetachedInfo,
  type DetachedStarted,
  listDetached,
  type StartDetachedOptions,
  startDetached,
} from "./exec/detached.js";
import { type ExecHandle, startExec } from "./exec/exec-handle.js";
import { buildExecStart, type ExecOptions } from "./exec/exec-request.js";
import { collectRun, type RunOptions, type RunResult } from "./exec/run.js";
import { Code, GuestError } from "./guest-error.js";
import {
  type ForwardListener,
  type ForwardPortOptions,
  forwardPort,
  type ListenForwardOptions,
  listenForward,
} from "./port-forward.js";
import { type GuestStat, type StatOptions, statPath } from "./stat.js";
import { GuestConnection, type GuestConnectionOptions } from "./transport/guest-connection.js";
import { formatTarget, type GuestTarget, parseTarget } from "./transport/target.js";
import { type WaitUntilReadyOptions, waitUntilReady } from "./wait-until-ready.js";

/** Options of createGuestClient. */
export interface GuestClientOptions extends GuestConnectionOptions {
  /** A target string (`hvsock:/run/vm.vsock`, `vsock:3`, `unix:/tmp/agent.sock`, `tcp:127.0.0.1:2222`) or a parsed target. */
  target: string | GuestTarget;
}

/** Options of connect(). */
export interface ConnectOptions {
  signal?: AbortSignal;
  /** Default: the client's. */
  connectTimeoutMs?: number;
}

/** A client of one guest agent. */
export interface GuestClient {
  /** Where the agent is. */
  readonly target: GuestTarget;
  /**
   * Starts a command and returns its handle at once (connecting first if needed):
   * iterate it for output, await `exit`. Bad arguments throw a GuestError
   * (INVALID_ARGUMENT) here; everything else arrives through the handle.
   */
  exec(argv: readonly string[], options: ExecOptions & { stdin: true }): ExecHandle & { readonly stdin: Writable };
  exec(argv: readonly string[], options?: ExecOptions): ExecHandle;
  /**
   * Runs a command to its end and collects its output (capped; see RunOptions). A
   * non-zero exit is in the result, unless `check: true` makes it a CommandFailedError.
   */
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
  /** Describes a path in the guest; a missing path is `{ exists: false }`. */
  stat(path: string, options?: StatOptions): Promise<GuestStat>;
  /** Copies a local file or tree into the guest (see copyTo). */
  copyTo(localPath: string, guestPath: string, options?: CopyToOptions & ConnectOptions): Promise<CopyResult>;
  /** Copies a guest file or tree out to the host (see copyFrom). */
  copyFrom(guestPath: string, localPath: string, options?: CopyFromOptions & ConnectOptions): Promise<CopyResult>;
  /** Resolves once the agent answers the gRPC health check; see WaitUntilReadyOptions. */
  waitUntilReady(options?: WaitUntilReadyOptions): Promise<void>;
  /**
   * What the agent announced beyond the original protocol (connecting first if needed):
   * names from `Capability` in @guestkit/protocol. Empty for an agent without guestkit's
   * additions, such as the existing Go agent; the client then speaks only the original
   * protocol, and says so (GuestConnectionOptions.onWarning) where that changes a result.
   */
  capabilities(options?: ConnectOptions): Promise<ReadonlySet<string>>;
  /**
   * A TCP connection to `port` inside the guest (host 127.0.0.1 there unless `host`),
   * as a Duplex with half-close in each direction; resolves once the agent connected.
   */
  forwardPort(port: number, options?: ForwardPortOptions): Promise<Duplex>;
  /** Listens on a local port and forwards every connection to a port inside the guest. */
  listenForward(options: ListenForwardOptions): Promise<ForwardListener>;
  /**
   * Starts a command that outlives this client (see StartDetached in guest.proto):
   * resolves with its id and pid, or with `exit` when it could not start.
   */
  startDetached(argv: readonly string[], options?: StartDetachedOptions): Promise<DetachedStarted>;
  /** The agent's detached commands, running and recently exited. */
  listDetached(): Promise<DetachedInfo[]>;
  /** Attaches to a detached command: what it kept, then live output and its exit. */
  attach(id: string, options?: AttachOptions): AttachHandle;
  /** Sends `signal` to a detached command; without one, ends it and everything it started (TERM, then KILL). */
  killDetached(id: string, signal?: string | number): Promise<void>;
  /** Forgets an exited detached command. */
  removeDetached(id: string): Promise<void>;
  /**
   * Connects now (retrying like any call) and returns the raw grpc-js client on the
   * shared connection, for calls the library does not wrap. Its calls need the
   * client's token, if any, in their metadata.
   */
  connect(options?: ConnectOptions): Promise<GuestServiceClient>;
  /** Ends running calls (they reject with reason `closed`) and closes the connection. */
  close(): Promise<void>;
}

/**
 * Creates a client. Nothing is dialed until the first call. Throws a GuestError
 * (INVALID_ARGUMENT) for a bad target string.
 */
export function createGuestClient(
  target: string | GuestTarget | GuestClientOptions,
  options: GuestConnectionOptions = {},
): GuestClient {
  const merged: GuestClientOptions =
    typeof target === "object" && "target" in target ? { ...options, ...target } : { ...options, target };
  const parsed = typeof merged.target === "string" ? parseTarget(merged.target) : merged.target;
  return new Client(parsed, merged);
}

class Client implements GuestClient {
  readonly target: GuestTarget;
  readonly #connection: GuestConnection;
  readonly #running = new Set<(error: GuestError) => void>();

  constructor(target: GuestTarget, options: GuestConnectionOptions) {
    this.target = target;
    this.#connection = new GuestConnection(target, options);
  }

  exec(argv: readonly string[], options: ExecOptions & { stdin: true }): ExecHandle & { readonly stdin: Writable };
  exec(argv: readonly string[], options?: ExecOptions): ExecHandle;
  exec(argv: readonly string[], options: ExecOptions = {}): ExecHandle {
    const start = buildExecStart(argv, options, `${formatTarget(this.target)}: exec`);
    return startExec(
      {
        connection: this.#connection,
        track: (cancel) => {
          this.#running.add(cancel);
          return () => this.#running.delete(cancel);
        },
      },
      start,
      options,
    );
  }

  run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const { input, maxOutputBytes: _max, check: _check, ...execOptions } = options;
    try {
      const handle = this.exec(argv, { ...execOptions, ...(input !== undefined ? { stdin: true } : {}) });
      return collectRun(handle, options, `${formatTarget(this.target)}: run ${argv[0]}`);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  stat(path: string, options: StatOptions = {}): Promise<GuestStat> {
    return statPath(this.#connection, path, options);
  }

  async copyTo(
    localPath: string,
    guestPath: string,
    options: CopyToOptions & ConnectOptions = {},
  ): Promise<CopyResult> {
    const { connectTimeoutMs: _t, ...copyOptions } = options;
    const channel = await this.#connection.ready(this.#readyOptions(options));
    return copyTo(channel, localPath, guestPath, copyOptions);
  }

  async copyFrom(
    guestPath: string,
    localPath: string,
    options: CopyFromOptions & ConnectOptions = {},
  ): Promise<CopyResult> {
    const { connectTimeoutMs: _t, ...copyOptions } = options;
    const channel = await this.#connection.ready(this.#readyOptions(options));
    return copyFrom(channel, guestPath, localPath, copyOptions);
  }

  waitUntilReady(options: WaitUntilReadyOptions = {}): Promise<void> {
    return waitUntilReady(this.#connection, options);
  }

  forwardPort(port: number, options: ForwardPortOptions = {}): Promise<Duplex> {
    return forwardPort(this.#connection, port, options);
  }

  listenForward(options: ListenForwardOptions): Promise<ForwardListener> {
    return listenForward(this.#connection, options);
  }

  startDetached(argv: readonly string[], options: StartDetachedOptions = {}): Promise<DetachedStarted> {
    return startDetached(this.#connection, argv, options);
  }

  listDetached(): Promise<DetachedInfo[]> {
    return listDetached(this.#connection);
  }

  attach(id: string, options: AttachOptions = {}): AttachHandle {
    return attachDetached(this.#connection, id, options);
  }

  killDetached(id: string, signal?: string | number): Promise<void> {
    return controlDetached(this.#connection, id, signal === undefined ? { kill: true } : { signal });
  }

  removeDetached(id: string): Promise<void> {
    return controlDetached(this.#connection, id, { remove: true });
  }

  async capabilities(options: ConnectOptions = {}): Promise<ReadonlySet<string>> {
    return (await this.#connection.ready(this.#readyOptions(options))).capabilities;
  }

  async connect(options: ConnectOptions = {}): Promise<GuestServiceClient> {
    return (await this.#connection.ready(this.#readyOptions(options))).guest;
  }

  async close(): Promise<void> {
    const closed = new GuestError(Code.CANCELLED, "the client was closed", {
      reason: "closed",
      context: formatTarget(this.target),
    });
    for (const cancel of [...this.#running]) cancel(closed);
    await this.#connection.close();
  }

  #readyOptions(options: ConnectOptions): { deadline?: number; signal?: AbortSignal } {
    return {
      ...(options.connectTimeoutMs !== undefined ? { deadline: Date.now() + options.connectTimeoutMs } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    };
  }
}
