// An agent that knows only the original protocol (docs/wire-protocol.md), as the existing Go
// agent does: CopyToGuest takes start, data, end and nothing else, and a request whose
// oneof holds a field it does not know is dropped without a word, exactly what a Go
// agent does with a guestkit `batch`. It announces nothing in its response headers. The
// host's copyTo must notice none of that and still deliver every file, in the original
// framing. A real grpc-js server in its own process, like the hostile and rogue agents.
//
// This file is both the library side (startLegacyAgent) and the server process: run as a
// script, it serves with the config given as JSON in argv[2].
import { closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type CopyToGuestRequest,
  type CopyToGuestResponse,
  CopyToGuestResponseSchema,
  guestServiceDefinition,
  MAX_MESSAGE_BYTES,
  type StatPathRequest,
  type StatPathResponse,
  StatPathResponseSchema,
} from "@guestkit/protocol";
import { announceWhenBound, type RunningScriptAgent, runIfMain, startScriptAgent } from "./script-agent.js";

/** A running legacy agent. */
export type LegacyAgent = RunningScriptAgent;

const SCRIPT = fileURLToPath(import.meta.url);

/** Starts a legacy agent and resolves once it accepts connections. */
export async function startLegacyAgent(): Promise<LegacyAgent> {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-legacy-"));
  const socketPath = join(dir, "agent.sock");
  const config: ServeConfig = { socketPath };
  return startScriptAgent("legacy agent", SCRIPT, config, dir);
}

interface ServeConfig {
  socketPath: string;
}

// Like the Go agent: files written in place (not atomically), parents made as needed.
function copyToGuest(
  call: grpc.ServerReadableStream<CopyToGuestRequest, CopyToGuestResponse>,
  done: grpc.sendUnaryData<CopyToGuestResponse>,
) {
  let fd: number | undefined;
  let bytesWritten = 0n;
  let failed = false;
  const fail = (error: unknown) => {
    if (failed) return;
    failed = true;
    done(null, create(CopyToGuestResponseSchema, { success: false, error: String(error) }));
  };
  call.on("error", () => undefined);
  call.on("data", (request: CopyToGuestRequest) => {
    if (failed) return;
    try {
      const { request: message } = request;
      if (message.case === "start") {
        const start = message.value;
        mkdirSync(start.isDir ? start.path : dirname(start.path), { recursive: true });
        if (!start.isDir) fd = openSync(start.path, "w", start.mode || 0o644);
      } else if (message.case === "data") {
        if (fd !== undefined) writeSync(fd, message.value);
        bytesWritten += BigInt(message.value.length);
      } else if (message.case === "end") {
        if (fd !== undefined) closeSync(fd);
        fd = undefined;
      }
      // Anything else is a field this agent does not know: dropped, as protobuf and Go drop it.
    } catch (error) {
      fail(error);
    }
  });
  call.on("end", () => {
    if (!failed) done(null, create(CopyToGuestResponseSchema, { success: true, bytesWritten }));
  });
}

function statPath(
  call: grpc.ServerUnaryCall<StatPathRequest, StatPathResponse>,
  done: grpc.sendUnaryData<StatPathResponse>,
) {
  try {
    const stats = call.request.followLinks ? statSync(call.request.path) : lstatSync(call.request.path);
    done(
      null,
      create(StatPathResponseSchema, {
        exists: true,
        isDir: stats.isDirectory(),
        isFile: stats.isFile(),
        isSymlink: stats.isSymbolicLink(),
        mode: stats.mode & 0o777,
        size: BigInt(stats.size),
      }),
    );
  } catch {
    done(null, create(StatPathResponseSchema, { exists: false }));
  }
}

async function serve(config: ServeConfig): Promise<void> {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });
  server.addService(
    guestServiceDefinition as unknown as grpc.ServiceDefinition,
    {
      copyToGuest,
      statPath,
      copyFromGuest: (call: grpc.ServerWritableStream<unknown, unknown>) =>
        call.destroy(Object.assign(new Error("unimplemented"), { code: grpc.status.UNIMPLEMENTED })),
      exec: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
        call.destroy(Object.assign(new Error("unimplemented"), { code: grpc.status.UNIMPLEMENTED })),
    } as unknown as grpc.UntypedServiceImplementation,
  );
  await announceWhenBound("legacy agent", server, config.socketPath);
}

runIfMain("legacy agent", SCRIPT, serve);
