// The far end of the raw-socket reference, in its own process like the agent: a plain
// Unix socket server. Each connection starts with one JSON line saying what to do:
// {"op":"sink","path":P}    write everything that follows to P, then answer "done\n";
// {"op":"source","path":P}  send P's bytes and close;
// {"op":"spawn","argv":[...]} send the command's stdout and close.
import { spawn } from "node:child_process";
import { createReadStream, createWriteStream, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { pipeline } from "node:stream/promises";
import { RAW_BUFFER_BYTES } from "./raw-pipe-buffer.js";

type Request = { op: "sink"; path: string } | { op: "source"; path: string } | { op: "spawn"; argv: string[] };

function serve(socket: Socket): void {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const newline = head.indexOf(0x0a);
    if (newline < 0) return;
    socket.off("data", onData);
    socket.pause();
    const request = JSON.parse(head.subarray(0, newline).toString("utf8")) as Request;
    const rest = head.subarray(newline + 1);
    if (rest.length > 0) socket.unshift(rest);
    handle(socket, request).catch((error: unknown) => {
      process.stderr.write(`raw-pipe-peer: ${(error as Error).message}\n`);
      socket.destroy();
    });
  };
  socket.on("data", onData);
}

async function handle(socket: Socket, request: Request): Promise<void> {
  switch (request.op) {
    case "sink": {
      const file = createWriteStream(request.path, { highWaterMark: RAW_BUFFER_BYTES });
      await pipeline(socket, file, { end: true });
      socket.end("done\n");
      return;
    }
    case "source":
      await pipeline(createReadStream(request.path, { highWaterMark: RAW_BUFFER_BYTES }), socket);
      return;
    case "spawn": {
      const [command, ...args] = request.argv;
      const child = spawn(command as string, args, { stdio: ["ignore", "pipe", "inherit"] });
      await pipeline(child.stdout, socket);
      return;
    }
  }
}

const path = process.argv[2];
if (!path) throw new Error("usage: raw-pipe-peer SOCKET");
rmSync(path, { force: true });
// Half-open: a sink answers "done" after the sender has ended its side.
createServer({ allowHalfOpen: true }, serve).listen(path, () => process.stdout.write("ready\n"));
process.on("SIGTERM", () => process.exit(0));
