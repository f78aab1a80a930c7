// guest-agent: the GuestService server. Runs inside the guest, listens on vsock:2222.
// First: refuses a Node too old to serve TTYs before anything else is evaluated.
import "./node-requirement.js";
import { parseArgs } from "node:util";
import { readTokenFile } from "@guestkit/protocol";
import { addonReport } from "./addon-report.js";
import { posixSpawnFallbackReason } from "./exec/process-launch.js";
import { logError, logInfo, setQuiet } from "./log.js";
import { createAgentServer } from "./server.js";
import { LISTEN_FORMS, parseListenAddress } from "./transport/listen-address.js";
import { checkTokenFor } from "./transport/token-auth.js";
import { agentVersion } from "./version.js";

/** How long a stop may take before the agent exits with connections still open. */
const SHUTDOWN_DEADLINE_MS = 10_000;

const USAGE = `usage: guest-agent [--listen ADDR]... [--token-file PATH] [--no-cgroups] [--quiet] [--version]

Serves guest.GuestService (with gRPC health and reflection) on every ADDR.
  --listen ADDR       ${LISTEN_FORMS}; repeatable; default vsock:2222
  --token-file PATH   require "authorization: Bearer <token>" on every call;
                      needed to listen on TCP (loopback too: any local user
                      can connect to it); only its owner may read the file
  --no-cgroups        do not run each command in a cgroup of its own (then a
                      timeout or cancel misses what a command starts with setsid)
  --quiet             log errors only
  --version           print the agent's version
`;

async function main(): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse();
  } catch (error) {
    process.stderr.write(`guest-agent: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.values.version) {
    process.stdout.write(`${agentVersion()}\n`);
    return 0;
  }
  setQuiet(args.values.quiet === true);
  let addresses: ReturnType<typeof parseListenAddress>[];
  let token: string | undefined;
  try {
    addresses = (args.values.listen ?? ["vsock:2222"]).map(parseListenAddress);
    if (args.values["token-file"] !== undefined) token = readTokenFile(args.values["token-file"]);
    // Before any listener opens: an agent that cannot serve every address serves none.
    for (const address of addresses) checkTokenFor(address, token);
  } catch (error) {
    process.stderr.write(`guest-agent: ${(error as Error).message}\n`);
    return 2;
  }

  const agent = createAgentServer({ ...(token ? { token } : {}), cgroups: args.values["no-cgroups"] !== true });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logInfo(`${signal}: stopping (ending ${agent.commands.size} running command(s))`);
    // A connection whose host stopped reading leaves its HTTP/2 session with a write that
    // never finishes, and Node's teardown of that session waits for it: the server's
    // shutdown would then never complete (tests/reliability/stalled-host-shutdown.test.ts).
    // By the deadline the commands have been ended (TERM, then KILL after 2 s), so what
    // is left is connections, and exiting closes them.
    setTimeout(() => {
      logError(`shutdown: connections still open after ${SHUTDOWN_DEADLINE_MS} ms; exiting anyway`);
      process.exit(0);
    }, SHUTDOWN_DEADLINE_MS).unref();
    agent.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        logError(`shutdown: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // A bug in one call must not take down every other call and running command.
  process.on("uncaughtException", (error) => {
    // A broken stdout/stderr is not worth a log line (see log.ts); anything else is.
    if ((error as NodeJS.ErrnoException).code !== "EPIPE") logError(`uncaught: ${error.stack ?? error.message}`);
  });

  try {
    for (const address of addresses) await agent.listen(address);
  } catch (error) {
    logError((error as Error).message);
    await agent.shutdown();
    return 1;
  }
  logInfo(`serving on ${args.values.listen?.join(", ") ?? "vsock:2222"} (pid ${process.pid})`);
  logInfo(agent.processTracking);
  if (posixSpawnFallbackReason) logInfo(`commands start with fork, which is slower: ${posixSpawnFallbackReason}`);
  logInfo(`${agentVersion()} on Node ${process.versions.node}; ${await addonReport()}`);
  return -1;
}

function parse() {
  return parseArgs({
    options: {
      listen: { type: "string", multiple: true },
      "token-file": { type: "string" },
      "no-cgroups": { type: "boolean" },
      quiet: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean" },
    },
    strict: true,
    allowPositionals: false,
  });
}

main().then((code) => {
  if (code >= 0) process.exit(code);
});
