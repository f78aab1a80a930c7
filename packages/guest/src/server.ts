// The agent's gRPC server: GuestService, health and reflection on every listener.
import * as grpc from "@grpc/grpc-js";
import {
  guestServiceDefinition,
  HTTP2_WINDOW_BYTES,
  MAX_CONCURRENT_STREAMS,
  MAX_MESSAGE_BYTES,
  SERVICE_NAME,
} from "@guestkit/protocol";
import { DetachedCommands } from "./exec/detached-commands.js";
import { createExecHandler } from "./exec/exec-service.js";
import { setUpCommandCgroups } from "./exec/process-cgroup.js";
import { RunningCommands } from "./exec/running-commands.js";
import { createCopyFromGuestHandler } from "./files/copy-from-guest.js";
import { createCopyToGuestHandler } from "./files/copy-to-guest.js";
import { handleStatPath } from "./files/stat-path.js";
import { createForwardPortHandler } from "./port-forward.js";
import { createCapabilityInterceptor } from "./transport/capability-announcement.js";
import { DataConnections } from "./transport/data-connections.js";
import { addHealthService } from "./transport/health-service.js";
import { logHttp2SessionErrors } from "./transport/http2-session-log.js";
import { allowStreamResets } from "./transport/http2-stream-resets.js";
import { widenHttp2Windows } from "./transport/http2-window.js";
import { grpcBindTarget, type ListenAddress } from "./transport/listen-address.js";
import { addReflection } from "./transport/reflection.js";
import { checkTokenFor, createTokenInterceptor } from "./transport/token-auth.js";
import { type BoundSocket, bindUnixSocketPrivately, removeBoundSocket } from "./transport/unix-socket-bind.js";
import { listenVsock } from "./transport/vsock-listener.js";

export interface AgentServerOptions {
  /** Every call must carry `authorization: Bearer <token>`. Required to listen on TCP. */
  token?: string;
  /**
   * false: do not put commands in cgroups (for an agent whose cgroup is not its own to
   * divide). They are then ended by their session and process group, which what they
   * start with setsid leaves.
   */
  cgroups?: boolean;
}

/** A running agent. */
export interface AgentServer {
  readonly commands: RunningCommands;
  /** One line for the start-up log: how the commands' processes are tracked, and ended. */
  readonly processTracking: string;
  /** Starts listening; resolves once the address accepts connections. */
  listen(address: ListenAddress): Promise<void>;
  /** Stops accepting, ends everything every running command started, closes connections. */
  shutdown(): Promise<void>;
}

// The agent serves a handful of hosts on a private channel: generous message limits
// (bounded; see limits.ts) and keepalive pings accepted at any rate, so hosts can
// notice a dead VM within seconds (grpc-js servers enforce no ping policy; the agent
// announces this as the `keepalive-pings` capability).
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
    // The capability header goes on every answer, refusals of a bad token included.
    interceptors: [createCapabilityInterceptor(), ...(options.token ? [createTokenInterceptor(options.token)] : [])],
  });
  // Uploads arrive at the speed of the window the agent grants (see http2-window.ts).
  widenHttp2Windows(server, HTTP2_WINDOW_BYTES);
  // A host cancels calls as part of its work; see http2-stream-resets.ts.
  allowStreamResets(server);
  logHttp2SessionErrors(server);
  // Bulk copies move beside HTTP/2, on connections to the same listeners.
  const data = new DataConnections();
  data.listenOn(server);
  const commands = new RunningCommands();
  const cgroups = options.cgroups === false ? "--no-cgroups" : setUpCommandCgroups();
  const processTracking =
    typeof cgroups === "string"
      ? `commands are not put in cgroups (${cgroups}): a timeout, cancel or stop ends a command's session and process group, and what it started in a session of its own runs on`
      : cgroups.describe();
  const commandCgroups = typeof cgroups === "string" ? undefined : cgroups;
  const detached = new DetachedCommands(commands, commandCgroups);
  server.addService(
    guestServiceDefinition as unknown as grpc.ServiceDefinition,
    {
      exec: createExecHandler(commands, commandCgroups, data),
      copyToGuest: createCopyToGuestHandler(data),
      copyFromGuest: createCopyFromGuestHandler(data),
      statPath: handleStatPath,
      forwardPort: createForwardPortHandler({ tcpPorts: () => tcpPorts }, data),
      startDetached: detached.start,
      listDetached: detached.list,
      attachDetached: detached.attach,
      controlDetached: detached.control,
    } as unknown as grpc.UntypedServiceImplementation,
  );
  const health = addHealthService(server, { "": "SERVING", [SERVICE_NAME]: "SERVING" });
  addReflection(server);
  const unixSockets: BoundSocket[] = [];
  // What ForwardPort must not reach (see port-forward.ts).
  const tcpPorts = new Set<number>();
  const closers: Array<() => void> = [];

  return {
    commands,
    processTracking,
    async listen(address) {
      checkTokenFor(address, options.token);
      if (address.kind === "vsock") {
        closers.push(await listenVsock(server, address.port, { tokenRequired: Boolean(options.token) }));
        return;
      }
      const bind = (target: string) =>
        new Promise<number>((resolve, reject) => {
          server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (error, port) =>
            error ? reject(error) : resolve(port),
          );
        });
      if (address.kind === "unix") {
        unixSockets.push(
          await bindUnixSocketPrivately(
            address.path,
            async (staged) => {
              await bind(grpcBindTarget({ kind: "unix", path: staged }));
            },
            (staged) => server.unbind(grpcBindTarget({ kind: "unix", path: staged })),
          ),
        );
        return;
      }
      tcpPorts.add(await bind(grpcBindTarget(address)));
    },
    async shutdown() {
      health.setStatus("", "NOT_SERVING");
      health.setStatus(SERVICE_NAME, "NOT_SERVING");
      health.endWatches();
      for (const close of closers) close();
      await commands.terminateAll();
      if (typeof cgroups !== "string") cgroups.close();
      await new Promise<void>((resolve) => {
        // Running calls got their exit already; give them a moment to flush, then cut.
        const timer = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await Promise.all(unixSockets.map(removeBoundSocket));
    },
  };
}
