// `guestctl proxy`: a local plain-gRPC endpoint for tools that cannot dial a hybrid
// vsock socket themselves (grpcurl, `buf curl`). Every connection accepted is dialed
// through the library's dialer (the CONNECT/OK handshake included) and the two are
// joined byte for byte: the proxy does not parse gRPC, so every method, reflection and
// health work as they would directly. Runs until SIGINT, SIGTERM or SIGHUP, then
// closes every connection and removes its socket.
import { lstat, unlink } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { dialWithRetry } from "../transport/connect-retry.js";
import { splice } from "../transport/socket-splice.js";
import { formatTarget } from "../transport/target.js";
import { type ConnectionFlags, parseSeconds, resolveTarget } from "./connection-flags.js";
import { CliError, messageOf, printable, usageError } from "./exit-status.js";
import { loopbackPeerUid, loopbackPeerUidUnavailable } from "./loopback-peer-uid.js";
import { type ProxyListenAddress, parseProxyListenAddress } from "./proxy-listen-address.js";

/** The options of `proxy` as commander parses them. */
export interface ProxyFlags extends ConnectionFlags {
  listen?: string;
}

const STOP_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** Runs the proxy until a stop signal; resolves with the exit status. */
export async function proxyCommand(flags: ProxyFlags): Promise<number> {
  if (flags.listen === undefined) throw usageError("proxy needs --listen unix:PATH or --listen tcp:127.0.0.1:PORT");
  const address = parseProxyListenAddress(flags.listen);
  const target = resolveTarget(flags);
  const connectTimeoutMs =
    flags.connectTimeout === undefined ? 0 : parseSeconds(flags.connectTimeout, "--connect-timeout") * 1000;
  if (flags.tokenFile !== undefined) {
    throw usageError("proxy passes bytes through and cannot add a token; the client must send it");
  }
  // Handlers first: a stop signal that comes while setting up must still clean up.
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    for (const name of STOP_SIGNALS) process.once(name, () => resolve(name));
  });
  const connections = new Set<Socket>();
  const server = createServer({ pauseOnConnect: true }, (local) => {
    connections.add(local);
    local.on("error", () => {});
    const dialing = new AbortController();
    local.once("close", () => {
      connections.delete(local);
      dialing.abort();
    });
    // A Unix socket is owner-only from the start (see listen()); a TCP connection is
    // admitted only from this user or root, before any byte of it is read.
    const admitted = address.kind === "tcp" ? admitLoopbackPeer(local) : Promise.resolve(true);
    admitted
      .then((admit) => {
        if (!admit) throw new Refused();
        return dialWithRetry(target, { connectTimeoutMs, signal: dialing.signal });
      })
      .then(
        (remote) => {
          if (local.destroyed) {
            remote.destroy();
            return;
          }
          connections.add(remote);
          remote.once("close", () => connections.delete(remote));
          void splice(local, remote);
        },
        (error: unknown) => {
          if (!dialing.signal.aborted && !(error instanceof Refused)) {
            process.stderr.write(`guestctl: proxy: ${messageOf(error)}\n`);
          }
          local.destroy();
        },
      );
  });
  if (address.kind === "tcp") {
    const unavailable = await loopbackPeerUidUnavailable();
    if (unavailable !== undefined) {
      throw new CliError(
        `cannot listen on ${printable(describe(address))}: any local user can connect to a TCP port, and the proxy ${unavailable}; use --listen unix:PATH`,
      );
    }
  }
  const shown = await listen(server, address);
  const ownSocket = address.kind === "unix" ? await lstat(address.path) : undefined;
  process.stderr.write(
    `guestctl: proxy on ${printable(shown)} -> ${printable(formatTarget(target))} (stop with Ctrl-C)\n`,
  );
  const signal = await stopped;
  process.stderr.write(`guestctl: proxy: ${signal}, stopping\n`);
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const socket of connections) socket.destroy();
  await closed;
  if (address.kind === "unix" && ownSocket) {
    // Remove the socket only if it is still the one we created.
    const now = await lstat(address.path).catch(() => undefined);
    if (now && now.ino === ownSocket.ino && now.dev === ownSocket.dev) await unlink(address.path).catch(() => {});
  }
  return 0;
}

/** A connection from another local user, already reported and closed. */
class Refused extends Error {}

// Whoever reaches the agent through the proxy runs commands as root in the guest: the
// same users as could use a Unix socket of ours, this user and root, may.
async function admitLoopbackPeer(local: Socket): Promise<boolean> {
  const uid = await loopbackPeerUid(local);
  const own = process.getuid?.();
  if (uid !== undefined && (uid === own || uid === 0)) return true;
  const who = uid === undefined ? "a connection whose owner could not be found" : `a connection from uid ${uid}`;
  process.stderr.write(`guestctl: proxy: refused ${who}: only uid ${own} (this user) and root may use it\n`);
  return false;
}

// Listens; resolves with the address as the user should write it (the real port for port 0).
async function listen(server: Server, address: ProxyListenAddress): Promise<string> {
  if (address.kind === "unix") await clearStaleSocket(address.path);
  // The socket gives root in the guest to whoever can connect: only our own user may.
  const umask = process.umask(0o077);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      const done = () => {
        server.off("error", reject);
        resolve();
      };
      if (address.kind === "unix") server.listen(address.path, done);
      else server.listen(address.port, address.host, done);
    });
  } catch (error) {
    throw new CliError(`cannot listen on ${printable(describe(address))}: ${messageOf(error)}`);
  } finally {
    process.umask(umask);
  }
  if (address.kind === "unix") return `unix:${address.path}`;
  const bound = server.address();
  const port = typeof bound === "object" && bound ? bound.port : address.port;
  return address.host.includes(":") ? `tcp:[${address.host}]:${port}` : `tcp:${address.host}:${port}`;
}

// A socket file left by a proxy that died is replaced; a live one, or anything that is
// not a socket, is not.
async function clearStaleSocket(path: string): Promise<void> {
  const info = await lstat(path).catch(() => undefined);
  if (!info) return;
  if (!info.isSocket()) throw new CliError(`${printable(path)} exists and is not a socket; not replacing it`);
  const refused = await new Promise<boolean>((resolve) => {
    const probe = connect({ path });
    probe.once("connect", () => {
      probe.destroy();
      resolve(false);
    });
    probe.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
  if (!refused) throw new CliError(`${printable(path)} is in use (or not ours to replace)`);
  await unlink(path);
}

function describe(address: ProxyListenAddress): string {
  return address.kind === "unix" ? `unix:${address.path}` : `tcp:${address.host}:${address.port}`;
}
