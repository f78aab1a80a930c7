// Waiting for an agent to come up, with the standard gRPC health check
// (grpc.health.v1.Health/Check), so any gRPC agent that serves health can be waited for.
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import {
  createGrpcServiceDefinition,
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
} from "@guestkit/protocol";
import {
  Code,
  cancelledError,
  errorFromStatus,
  GuestError,
  isRetriableConnectError,
  toGuestError,
} from "./guest-error.js";
import { retryDelayMs } from "./transport/connect-retry.js";
import type { GuestChannel, GuestConnection } from "./transport/guest-connection.js";

/** Options of waitUntilReady(). */
export interface WaitUntilReadyOptions {
  /** Give up after this long. Default 30 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** The health service name to ask about. Default "" (the server as a whole). */
  service?: string;
}

const DEFAULT_WAIT_MS = 30_000;
// One health call must not use up the whole wait on a connection that went quiet.
const CHECK_TIMEOUT_MS = 5000;

// From the generated code, as the agent serves it: no .proto parsed at run time.
const checkMethod = createGrpcServiceDefinition(Health).check;

/**
 * Resolves once the agent answers the health check with SERVING, retrying (each time
 * with a fresh connection) while it cannot be reached or is not serving yet. An agent
 * without the health service (UNIMPLEMENTED) answered, so it is up. Rejects with the
 * last failure (its reason kept) when the time is up.
 */
export async function waitUntilReady(connection: GuestConnection, options: WaitUntilReadyOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
  const started = Date.now();
  const deadline = started + timeoutMs;
  const where = `${connection.context}: waiting for the agent`;
  const signal = options.signal;
  let last: GuestError | undefined;
  for (;;) {
    if (signal?.aborted) throw cancelledError(signal, where);
    try {
      const channel = await connection.ready({ deadline, ...(signal ? { signal } : {}) });
      const status = await check(
        channel,
        options.service ?? "",
        Math.min(CHECK_TIMEOUT_MS, deadline - Date.now()),
        where,
      );
      if (status === "SERVING") return;
      last = new GuestError(Code.UNAVAILABLE, `the agent reports ${status}`, { reason: "unavailable", context: where });
    } catch (caught) {
      const error = toGuestError(caught, where);
      if (error.code === Code.UNIMPLEMENTED) return;
      if (signal?.aborted) throw cancelledError(signal, where);
      const retriable = isRetriableConnectError(error) || error.code === Code.DEADLINE_EXCEEDED;
      if (!retriable) throw error;
      last = error;
    }
    const delay = retryDelayMs(Date.now() - started);
    if (Date.now() + delay >= deadline) {
      throw new GuestError(last.code, `not ready within ${timeoutMs} ms: ${last.details}`, {
        reason: last.reason,
        cause: last,
        context: where,
      });
    }
    try {
      await sleep(delay, undefined, signal ? { signal } : {});
    } catch {
      throw cancelledError(signal, where);
    }
  }
}

// One Health/Check call; resolves with the status name.
function check(channel: GuestChannel, service: string, timeoutMs: number, where: string): Promise<string> {
  return new Promise((resolve, reject) => {
    channel.health.makeUnaryRequest(
      checkMethod.path,
      checkMethod.requestSerialize,
      checkMethod.responseDeserialize,
      create(HealthCheckRequestSchema, { service }),
      channel.metadata(),
      { deadline: Date.now() + Math.max(1, timeoutMs) },
      (error, response) => {
        if (error) reject(errorFromStatus(error, where));
        else resolve(HealthCheckResponse_ServingStatus[response?.status ?? 0] ?? `status ${response?.status}`);
      },
    );
  });
}
