// The raw-socket reference: the same bytes through a plain Node Unix-socket connection
// to a peer process (raw-pipe-peer.ts), with no protocol at all. It is the ceiling a
// protocol over the same socket can approach.
import { type ChildProcess, spawn } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { stopProcess } from "./openssh.js";
import { RAW_BUFFER_BYTES } from "./raw-pipe-buffer.js";

/** A running raw-pipe peer. */
export interface RawPipe {
  /** Sends a local file; the peer writes it to `remotePath`. */
  send(localPath: string, remotePath: string): Promise<void>;
  /** Fetches the peer's `remotePath` into `localPath`. */
  receive(remotePath: string, localPath: string): Promise<void>;
  /** Runs `argv` at the peer and counts its stdout here; resolves to the byte count. */
  stream(argv: string[]): Promise<number>;
  /** The peer process (for its pid). */
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts the peer on a socket in `dir`. */
export async function startRawPipe(dir: string): Promise<RawPipe> {
  const socketPath = join(dir, "raw.sock");
  const peer = spawn(process.execPath, [fileURLToPath(new URL("./raw-pipe-peer.js", import.meta.url)), socketPath], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    peer.once("exit", (code) => reject(new Error(`raw-pipe peer exited (${code})`)));
    peer.stdout?.once("data", () => resolve());
  });
  const open = async (request: object): Promise<Socket> => {
    const socket = connect(socketPath);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.write(`${JSON.stringify(request)}\n`);
    return socket;
  };
  return {
    process: peer,
    async send(localPath, remotePath) {
      const socket = await open({ op: "sink", path: remotePath });
      const answer = new Promise<void>((resolve, reject) => {
        let text = "";
        socket.setEncoding("utf8");
        socket.on("data", (chunk: string) => {
          text += chunk;
        });
        socket.once("end", () => (text === "done\n" ? resolve() : reject(new Error(`raw peer answered ${text}`))));
        socket.once("error", reject);
      });
      await pipeline(createReadStream(localPath, { highWaterMark: RAW_BUFFER_BYTES }), socket, { end: true });
      await answer;
    },
    async receive(remotePath, localPath) {
      const socket = await open({ op: "source", path: remotePath });
      await pipeline(socket, createWriteStream(localPath, { highWaterMark: RAW_BUFFER_BYTES }));
    },
    async stream(argv) {
      const socket = await open({ op: "spawn", argv });
      let bytes = 0;
      await pipeline(
        socket,
        new Writable({
          write(chunk: Buffer, _encoding, done) {
            bytes += chunk.length;
            done();
          },
        }),
      );
      return bytes;
    },
    stop: () => stopProcess(peer),
  };
}
