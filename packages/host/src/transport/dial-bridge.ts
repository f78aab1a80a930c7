// How kernel vsock, which grpc-js cannot open, plugs into grpc-js with public API only:
// grpc-js connects to a Unix socket in a private temp dir, and each connection accepted
// there is spliced to a fresh dial() to the agent. It costs an extra copy of every byte
// and a hop per round trip (bench/README.md), so the other target kinds do without it
// (guest-connection.ts); it keeps the real dial error (errno) for the caller.
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { splice } from "./socket-splice.js";

/** A private local socket whose connections are spliced to the agent. */
export interface DialBridge {
  /** The Unix socket grpc-js connects to (`unix:${path}`). */
  readonly path: string;
  /** Stops accepting, destroys every spliced pair, removes the temp dir. */
  close(): Promise<void>;
}

// Bridges still open, so that a program that exits without closing its client (a CLI
// calling process.exit(), an uncaught exception) does not leave temp dirs behind.
const openDirs = new Set<string>();
let exitHookInstalled = false;

function removeOnExit(dir: string): void {
  openDirs.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const open of openDirs) rmSync(open, { recursive: true, force: true });
  });
}

/**
 * Opens a bridge. `connect` is called once per accepted connection and must resolve with
 * a socket to the agent (or reject: the accepted connection is then closed, which grpc-js
 * sees as a failed connection attempt). Its signal aborts when the accepted side goes
 * away first (grpc-js gave up, or the bridge is closing).
 */
export async function openDialBridge(connect: (signal: AbortSignal) => Promise<Socket>): Promise<DialBridge> {
  // mkdtemp creates the dir 0700: only this user can reach the socket, which matters
  // because whoever connects to it is talking to the agent (root in the guest).
  const dir = await mkdtemp(join(tmpdir(), "guestkit-bridge-"));
  removeOnExit(dir);
  const path = join(dir, "agent.sock");
  const live = new Set<Socket>();
  const server: Server = createServer({ pauseOnConnect: true }, (accepted) => {
    live.add(accepted);
    const controller = new AbortController();
    accepted.on("error", () => {});
    accepted.once("close", () => {
      live.delete(accepted);
      controller.abort();
    });
    connect(controller.signal).then(
      (agent) => {
        if (accepted.destroyed) {
          agent.destroy();
          return;
        }
        live.add(agent);
        agent.once("close", () => live.delete(agent));
        // Like grpc-js's own sockets, an idle bridge must not keep the process alive:
        // grpc-js refs its session while calls run, which keeps the loop going.
        agent.unref();
        accepted.unref();
        void splice(accepted, agent);
      },
      () => accepted.destroy(),
    );
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    openDirs.delete(dir);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  server.unref();
  return {
    path,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of live) socket.destroy();
      });
      openDirs.delete(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
