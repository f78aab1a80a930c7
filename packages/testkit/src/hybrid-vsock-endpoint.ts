// A stand-in for the host side of Cloud Hypervisor's hybrid vsock (docs/hybrid-vsock.md),
// byte for byte: a Unix socket where a client writes `CONNECT <port>\n`, gets
// `OK <host_side_port>\n` and then talks to whatever listens on that guest port, here
// an agent's Unix socket registered for the port. Fault modes play the VMM misbehaving
// for reliability tests. Test and demo support only: no product code depends on it.
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * How the endpoint misbehaves, from the moment it has read a valid CONNECT line:
 * - `none`: behaves;
 * - `close-mid-handshake`: writes half an OK line (`OK 10`), then closes;
 * - `garbage`: answers with a line that is not `OK <port>`;
 * - `never-answer`: says nothing and keeps the connection open (a guest that has not
 *   booted, or a hung VMM).
 */
export type HybridVsockFault = "none" | "close-mid-handshake" | "garbage" | "never-answer";

/** Options of startHybridVsockEndpoint. */
export interface HybridVsockEndpointOptions {
  /** Socket path. Default: `vm.vsock` in a fresh temp dir. */
  path?: string;
  /**
   * Play Firecracker: the whole CONNECT line must be there on the first read, or the
   * connection is dropped. (Cloud Hypervisor waits for the rest of the line.)
   */
  requireLineInOneRead?: boolean;
  /**
   * Hold the OK line until the guest side has sent its first bytes, and send both in
   * one write, so clients must keep bytes that arrive with the OK line. Only for a guest
   * side that speaks first (an HTTP/2 server such as C-core's); guestkit's agent waits for
   * the client's first bytes, so with it the OK line would never come.
   */
  coalesceOkWithFirstBytes?: boolean;
}

/** Counters for tests. */
export interface HybridVsockEndpointStats {
  /** Connections accepted on the socket. */
  accepted: number;
  /** Connections that got an OK and were joined to an agent. */
  joined: number;
  /** Joined connections still open. */
  open: number;
  /** Every CONNECT line received, as received (newline excluded). */
  lines: string[];
}

/** A running endpoint. */
export interface HybridVsockEndpoint {
  /** The socket clients connect to (the `socket=` of `--vsock`). */
  readonly path: string;
  /** The target string of this endpoint for a port: `hvsock:PATH:PORT`. */
  target(port?: number): string;
  /** Routes guest port `port` to an agent listening on `agentSocketPath`. */
  register(port: number, agentSocketPath: string): void;
  /** Nothing listens on `port` any more: connections to it are closed without OK. */
  unregister(port: number): void;
  /** Current fault mode; applies to connections whose CONNECT line is read after the change. */
  fault: HybridVsockFault;
  /**
   * Plays a VM that hangs: joined connections stay open but no byte moves either way,
   * and new connections get no answer, until thaw().
   */
  freeze(): void;
  /** Undoes freeze() for joined connections and new ones; those that came in while frozen stay unanswered. */
  thaw(): void;
  stats(): HybridVsockEndpointStats;
  /** Closes the socket and every connection, and removes what it created. */
  close(): Promise<void>;
}

// Cloud Hypervisor's first host-side port; each connection gets the next one.
const FIRST_HOST_PORT = 1073741824;
// Longest CONNECT line accepted, newline included.
const MAX_LINE_BYTES = 32;
// How long the VMM waits, once a side has shut a connection down, before it kills the
// connection whatever is still queued (CONN_SHUTDOWN_TIMEOUT_MS in both VMMs' vsock code).
const SHUTDOWN_DRAIN_MS = 2000;

/** Starts an endpoint; resolves once it accepts connections. */
export async function startHybridVsockEndpoint(options: HybridVsockEndpointOptions = {}): Promise<HybridVsockEndpoint> {
  const dir = options.path ? undefined : await mkdtemp(join(tmpdir(), "guestkit-hvsock-"));
  const path = options.path ?? join(dir as string, "vm.vsock");
  const ports = new Map<number, string>();
  const live = new Set<Socket>();
  const stats: HybridVsockEndpointStats = { accepted: 0, joined: 0, open: 0, lines: [] };
  let nextHostPort = FIRST_HOST_PORT;
  const state = { fault: "none" as HybridVsockFault, frozen: false };
  const joined = new Set<{ client: Socket; agent: Socket }>();
  // Ends are not piped: how the VMM closes is joinPair's business.
  const flow = (pair: { client: Socket; agent: Socket }, on: boolean) => {
    if (on) {
      pair.client.pipe(pair.agent, { end: false });
      pair.agent.pipe(pair.client, { end: false });
      pair.client.resume();
      pair.agent.resume();
    } else {
      pair.client.unpipe(pair.agent);
      pair.agent.unpipe(pair.client);
      pair.client.pause();
      pair.agent.pause();
    }
  };

  const track = (socket: Socket) => {
    live.add(socket);
    socket.on("error", () => {});
    socket.once("close", () => live.delete(socket));
  };

  // How Cloud Hypervisor and Firecracker end a connection (docs/hybrid-vsock.md, "How a
  // connection ends"). The guest closing: what the VMM still holds from the guest is
  // written out to the host first, for up to SHUTDOWN_DRAIN_MS, then the host's connection
  // is closed (a guest's half-close is not passed on; the stand-in sees a close and a
  // half-close alike, as EOF). The host half-closing: the guest is told neither side
  // sends any more, what the guest sends after that is dropped, and the connection is
  // killed when the guest closes or SHUTDOWN_DRAIN_MS later. A reset or a close without
  // EOF on either side kills it at once.
  const closeLikeTheVmm = ({ client, agent }: { client: Socket; agent: Socket }) => {
    let killTimer: NodeJS.Timeout | undefined;
    const kill = () => {
      clearTimeout(killTimer);
      client.destroy();
      agent.destroy();
    };
    const killLater = () => {
      killTimer ??= setTimeout(kill, SHUTDOWN_DRAIN_MS);
      killTimer.unref();
    };
    let agentEnded = false;
    agent.once("end", () => {
      agentEnded = true;
      client.unpipe(agent);
      killLater();
      // The end goes after whatever is still queued for the host; then the connection goes.
      client.end(kill);
    });
    agent.once("close", () => {
      if (!agentEnded) kill();
    });
    let clientEnded = false;
    client.once("close", () => {
      if (!clientEnded) kill();
    });
    client.once("end", () => {
      clientEnded = true;
      agent.unpipe(client);
      // Read and drop: the guest is not held back, and nothing more reaches the host.
      agent.on("data", () => {});
      agent.end();
      killLater();
    });
  };

  const server = createServer({ allowHalfOpen: true }, (client) => {
    stats.accepted += 1;
    track(client);
    let buffered: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const newline = buffered.indexOf(0x0a);
      if (newline < 0 || newline + 1 > MAX_LINE_BYTES) {
        // No complete line within the limit, or (Firecracker) not on the first read.
        if (buffered.length >= MAX_LINE_BYTES || newline >= 0 || options.requireLineInOneRead) client.destroy();
        return;
      }
      client.off("data", onData);
      client.off("end", onEnd);
      client.pause();
      const line = buffered.subarray(0, newline).toString("latin1");
      const rest = buffered.subarray(newline + 1);
      stats.lines.push(line);
      const port = parseConnectLine(line);
      if (port === undefined) {
        client.destroy();
        return;
      }
      handshake(client, port, rest);
    };
    // EOF before a complete line: close, no error text.
    const onEnd = () => client.destroy();
    client.on("data", onData);
    client.once("end", onEnd);
  });

  const handshake = (client: Socket, port: number, rest: Buffer) => {
    if (state.frozen) return;
    switch (state.fault) {
      case "close-mid-handshake":
        client.end("OK 10");
        return;
      case "garbage":
        client.end("ERR no such thing\n");
        return;
      case "never-answer":
        return;
      case "none":
        break;
    }
    const agentPath = ports.get(port);
    if (agentPath === undefined) {
      // Nothing listens on that guest port: a plain close (the kernel turns it into
      // ECONNRESET for a client that already sent more bytes).
      client.destroy();
      return;
    }
    const agent = connect({ path: agentPath, allowHalfOpen: true });
    track(agent);
    agent.once("error", () => client.destroy());
    agent.once("connect", () => {
      const hostPort = nextHostPort++;
      const ok = Buffer.from(`OK ${hostPort}\n`, "latin1");
      const join = (first: Buffer) => {
        if (client.destroyed) {
          agent.destroy();
          return;
        }
        stats.joined += 1;
        stats.open += 1;
        client.once("close", () => {
          stats.open -= 1;
        });
        client.write(first.length > 0 ? Buffer.concat([ok, first]) : ok);
        if (rest.length > 0) agent.write(rest);
        const pair = { client, agent };
        joined.add(pair);
        client.once("close", () => joined.delete(pair));
        closeLikeTheVmm(pair);
        flow(pair, !state.frozen);
      };
      if (options.coalesceOkWithFirstBytes)
        agent.once("data", (first: Buffer) => {
          agent.pause();
          join(first);
        });
      else join(Buffer.alloc(0));
    });
  };

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });

  return {
    path,
    target: (port = 2222) => `hvsock:${path}:${port}`,
    register(port, agentSocketPath) {
      ports.set(port, agentSocketPath);
    },
    unregister(port) {
      ports.delete(port);
    },
    get fault() {
      return state.fault;
    },
    set fault(value: HybridVsockFault) {
      state.fault = value;
    },
    freeze() {
      state.frozen = true;
      for (const pair of joined) flow(pair, false);
    },
    thaw() {
      state.frozen = false;
      for (const pair of joined) flow(pair, true);
    },
    stats: () => ({ ...stats, lines: [...stats.lines] }),
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of live) socket.destroy();
      });
      if (dir) await rm(dir, { recursive: true, force: true });
      else rmSync(path, { force: true });
    },
  };
}

// "CONNECT 2222" (prefix case-insensitive, as Cloud Hypervisor) -> 2222; else undefined.
function parseConnectLine(line: string): number | undefined {
  if (line.slice(0, 8).toUpperCase() !== "CONNECT ") return undefined;
  const digits = line.slice(8);
  if (!/^\d{1,10}$/.test(digits)) return undefined;
  const port = Number(digits);
  return port <= 0xffffffff ? port : undefined;
}
