// The agent's gRPC server: GuestService, health and reflection on every listener.
import { chmod, rm } from "node:fs/promises";
import * as grpc from "@grpc/grpc-js";
import {
  guestServiceDefinition,
  HTTP2_WINDOW_BYTES,
  MAX_CONCURRENT_STREAMS,
  MAX_MESSAGE_BYTES,
  SERVICE_NAME,
} from "@guestkit/protocol";
import { handleCopyFromGuest } from "./copy-from-guest.js";
import { handleCopyToGuest } from "./copy-to-guest.js";
import { createExecHandler } from "./exec-service.js";
import { addHealthService } from "./health-service.js";
import { logHttp2SessionErrors } from "./http2-session-log.js";
import { allowStreamResets } from "./http2-stream-resets.js";
import { widenHttp2Windows } from "./http2-window.js";
import { grpcBindTarget, isLoopbackHost, type ListenAddress } from "./listen-address.js";
import { addReflection } from "./reflection.js";
import { RunningCommands } from "./running-commands.js";
import { handleStatPath } from "./stat-path.js";
import { createTokenInterceptor } from "./token-auth.js";
import { listenVsock } from "./vsock-listener.js";

export interface AgentServerOptions {
  /** Every call must carry `authorization: Bearer <token>`. Required for non-loopback TCP. */
  token?: string;
}

/** A running agent. */
export interface AgentServer {
  readonly commands: RunningCommands;
  /** Starts listening; resolves once the address accepts connections. */
  listen(address: ListenAddress): Promise<void>;
  /** Stops accepting, ends every running command's process group, closes connections. */
  shutdown(): Promise<void>;
}

// The agent serves a handful of hosts on a private channel: generous message limits
// (bounded; see limits.ts) and keepalive pings accepted at any rate, so hosts can
// notice a dead VM within seconds.
const SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  // What bounds the agent's memory per connection (see limits.ts).
  "grpc.max_concurrent_streams": MAX_CONCURRENT_STREAMS,
};

export function createAgentServer(options: AgentServerOptions = {}): AgentServer {
  const server = new grpc.Server({
    ...SERVER_OPTIONS,
    ...(options.token ? { interceptors: [createTokenInterceptor(options.token)] } : {}),
  });
  // Uploads arrive at the speed of the window the agent grants (see http2-window.ts).
  widenHttp2Windows(server, HTTP2_WINDOW_BYTES);
  // A host cancels calls as part of its work; see http2-stream-resets.ts.
  allowStreamResets(server);
  logHttp2SessionErrors(server);
  const commands = new RunningCommands();
  server.addService(
    guestServiceDefinition as unknown as grpc.ServiceDefinition,
    {
      exec: createExecHandler(commands),
      copyToGuest: handleCopyToGuest,
      copyFromGuest: handleCopyFromGuest,
      statPath: handleStatPath,
    } as unknown as grpc.UntypedServiceImplementation,
  );
  const health = addHealthService(server, { "": "SERVING", [SERVICE_NAME]: "SERVING" });
  addReflection(server);
  const unixPaths: string[] = [];
  const closers: Array<() => void> = [];

  return {
    commands,
    async listen(address) {
      if (address.kind === "tcp" && !isLoopbackHost(address.host) && !options.token) {
        throw new Error(
          `refusing to listen on ${address.host}:${address.port} without a token: anyone who can reach it could run commands as root (use --token-file, or a loopback address)`,
        );
      }
      if (address.kind === "vsock") {
        closers.push(await listenVsock(server, address.port));
        return;
      }
      if (address.kind === "unix") {
        // A stale socket file from a previous run would make bind fail with EADDRINUSE.
        await rm(address.path, { force: true });
      }
      await new Promise<void>((resolve, reject) => {
        server.bindAsync(grpcBindTarget(address), grpc.ServerCredentials.createInsecure(), (error) =>
          error ? reject(error) : resolve(),
        );
      });
      if (address.kind === "unix") {
        unixPaths.push(address.path);
        // Whoever can connect can run commands as the agent's user: owner only.
        await chmod(address.path, 0o600);
      }
    },
    async shutdown() {
      health.setStatus("", "NOT_SERVING");
      health.setStatus(SERVICE_NAME, "NOT_SERVING");
      health.endWatches();
      for (const close of closers) close();
      await commands.terminateAll();
      await new Promise<void>((resolve) => {
        // Running calls got their exit already; give them a moment to flush, then cut.
        const timer = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await Promise.all(unixPaths.map((path) => rm(path, { force: true })));
    },
  };
}
