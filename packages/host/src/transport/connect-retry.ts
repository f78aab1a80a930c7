// Waiting for an agent that is still coming up: retry connection-level failures, each
// time with a fresh connection, until a deadline. Only the connecting is retried, never
// a call: whatever is retried here has provably not reached the agent.

import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { cancelledError, GuestError, isRetriableConnectError, toGuestError } from "../guest-error.js";
import { DEFAULT_DIAL_TIMEOUT_MS, DEFAULT_HANDSHAKE_TIMEOUT_MS, type DialOptions, dial } from "./dial.js";
import { formatTarget, type GuestTarget } from "./target.js";

// Existing hosts poll every 25 ms for the first 2 s (a VM that is about to answer),
// then every 250 ms (one that is still booting).
const FAST_RETRY_MS = 25;
const FAST_PHASE_MS = 2000;
const SLOW_RETRY_MS = 250;

/** Delay before the next attempt, given how long the caller has been trying. */
export function retryDelayMs(elapsedMs: number): number {
  return elapsedMs < FAST_PHASE_MS ? FAST_RETRY_MS : SLOW_RETRY_MS;
}

/** Options of retryConnect(). */
export interface RetryConnectOptions {
  /** Keep trying until this time (ms since the epoch, as Date.now()). A past deadline means one attempt. */
  deadline: number;
  signal?: AbortSignal;
  /** Prefix for error messages (the target). */
  context: string;
}

/** What one attempt is given. */
export interface ConnectAttempt {
  signal: AbortSignal | undefined;
  /**
   * Time left until the deadline, to cap the attempt's own timeouts so that it does not
   * overrun the deadline; undefined when the caller asked for a single attempt (then the
   * attempt uses its full timeouts).
   */
  remainingMs: number | undefined;
}

/**
 * Runs `attempt` until it succeeds, fails with an error that retrying cannot fix, or
 * the deadline passes; then rejects with the last error (its reason kept, the message
 * saying how long it tried).
 */
export async function retryConnect<T>(
  attempt: (attempt: ConnectAttempt) => Promise<T>,
  options: RetryConnectOptions,
): Promise<T> {
  const singleAttempt = options.deadline <= Date.now();
  const started = Date.now();
  let attempts = 0;
  for (;;) {
    if (options.signal?.aborted) throw cancelledError(options.signal, options.context);
    attempts += 1;
    let error: GuestError;
    try {
      const remainingMs = singleAttempt ? undefined : Math.max(1, options.deadline - Date.now());
      return await attempt({ signal: options.signal, remainingMs });
    } catch (caught) {
      error = toGuestError(caught, options.context);
    }
    if (options.signal?.aborted) throw cancelledError(options.signal, options.context);
    if (!isRetriableConnectError(error)) throw error;
    const elapsed = Date.now() - started;
    const delay = retryDelayMs(elapsed);
    if (Date.now() + delay >= options.deadline) {
      if (attempts === 1) throw error;
      throw new GuestError(error.code, `${error.details} (gave up after ${attempts} attempts in ${elapsed} ms)`, {
        reason: error.reason,
        cause: error,
        context: options.context,
      });
    }
    try {
      await sleep(delay, undefined, options.signal ? { signal: options.signal } : {});
    } catch {
      throw cancelledError(options.signal, options.context);
    }
  }
}

/** Options of dialWithRetry(). */
export interface DialWithRetryOptions extends DialOptions {
  /** Keep retrying until this long after the call. 0 (the default) = one attempt. */
  connectTimeoutMs?: number;
}

/**
 * dial() with retries while the agent is coming up (see retryConnect). What a
 * `guestctl proxy` or any raw-stream user wants; the gRPC connection retries the same way
 * through its own attempts (guest-connection.ts).
 */
export function dialWithRetry(target: GuestTarget, options: DialWithRetryOptions = {}): Promise<Socket> {
  const { connectTimeoutMs = 0, ...dialOptions } = options;
  return retryConnect(({ signal, remainingMs }) => dial(target, capTimeouts(dialOptions, signal, remainingMs)), {
    deadline: Date.now() + connectTimeoutMs,
    context: formatTarget(target),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

// An attempt started close to the deadline still gets this long, so that it fails for
// its real reason (nothing listening...) rather than for a timeout of a few ms.
export const MIN_ATTEMPT_MS = 100;

/** Dial options for one attempt: the caller's, with timeouts capped to the time left. */
export function capTimeouts(
  options: DialOptions,
  signal: AbortSignal | undefined,
  remainingMs: number | undefined,
): DialOptions {
  const cap = (value: number) =>
    remainingMs === undefined ? value : Math.min(value, Math.max(remainingMs, MIN_ATTEMPT_MS));
  return {
    dialTimeoutMs: cap(options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS),
    handshakeTimeoutMs: cap(options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS),
    ...(signal ? { signal } : {}),
  };
}
