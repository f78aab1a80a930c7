// Test agents that run as a Node script in a process of their own (the hostile and the
// rogue agent): their own process so memory tests measure the host alone, and so a
// misbehaving server cannot disturb the test's event loop.
import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import type { Message } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import * as grpc from "@grpc/grpc-js";
import { stopChild } from "./stop-child.js";

/** What the start function of each script agent (hostile, rogue, legacy) resolves to. */
export interface RunningScriptAgent {
  readonly socketPath: string;
  readonly pid: number;
  readonly process: ChildProcess;
  /** Kills the agent, waits for it to exit and removes its temp dir. */
  stop(): Promise<void>;
}

/**
 * Runs `node SCRIPT CONFIG_JSON` and resolves once the script prints "ready" on stdout;
 * `stop` then SIGKILLs it, waits for the exit and removes `dir`. On failure (exit, 15 s
 * without "ready") the process is killed and `dir` removed.
 */
export async function startScriptAgent(
  label: string,
  script: string,
  config: { socketPath: string },
  dir: string,
): Promise<RunningScriptAgent> {
  const child = spawn(process.execPath, [script, JSON.stringify(config)], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.setEncoding("utf8");
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (text: string) => {
    output += text;
  });
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  try {
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`${label} did not start: ${output}`)), 15_000);
      child.stdout?.on("data", (text: string) => {
        if (text.includes("ready")) {
          clearTimeout(timer);
          ready();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`${label} exited (${code}): ${output}`));
      });
    });
  } catch (error) {
    await stopChild(child, exited, "SIGKILL", dir);
    throw error;
  }
  return {
    socketPath: config.socketPath,
    pid: child.pid as number,
    process: child,
    stop: () => stopChild(child, exited, "SIGKILL", dir),
  };
}

/** The script side: writes `message` with backpressure; false once the host has gone. */
export async function sendWhenWritable<T>(
  call: grpc.ServerWritableStream<unknown, T> | grpc.ServerDuplexStream<unknown, T>,
  message: T,
): Promise<boolean> {
  if (call.cancelled) return false;
  if (call.write(message)) return true;
  await new Promise<void>((done) => {
    const finish = () => {
      call.off("drain", finish);
      call.off("cancelled", finish);
      call.off("close", finish);
      done();
    };
    call.on("drain", finish);
    call.on("cancelled", finish);
    call.on("close", finish);
  });
  return !call.cancelled;
}

// A field number no message of the protocol uses.
const PADDING_FIELD = 9999;
// The encoded padding field's value, kept for the next message of the same size.
let padding: { bytes: number; data: Uint8Array } | undefined;

/**
 * The script side: `message` with `bytes` of a field the protocol does not know added to
 * it, which a receiver skips. A hostile guest pads with it to make what the host keeps
 * from a message (one byte of output, say) look small beside what it received.
 */
export function padded<T extends Message>(message: T, bytes: number): T {
  if (bytes <= 0) return message;
  if (padding?.bytes !== bytes) padding = { bytes, data: new BinaryWriter().bytes(Buffer.alloc(bytes, 0x70)).finish() };
  const { data } = padding;
  message.$unknown = [...(message.$unknown ?? []), { no: PADDING_FIELD, wireType: WireType.LengthDelimited, data }];
  return message;
}

/** The script side: binds `server` on `socketPath`, then tells the parent it is ready. */
export async function announceWhenBound(label: string, server: grpc.Server, socketPath: string): Promise<void> {
  await new Promise<void>((done, fail) =>
    server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (error) =>
      error ? fail(error) : done(),
    ),
  );
  process.stdout.write(`${label} ready\n`);
}

/** Runs `serve(config)` when `script` is the process's main module (started by startScriptAgent). */
export function runIfMain<T>(label: string, script: string, serve: (config: T) => Promise<void>): void {
  if (process.argv[1] === undefined || resolve(process.argv[1]) !== script) return;
  serve(JSON.parse(process.argv[2] ?? "{}") as T).catch((error: unknown) => {
    process.stderr.write(`${label}: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
