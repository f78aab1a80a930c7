// A guest agent that misbehaves where hostile-agent.ts does not look: in Exec, StatPath
// and CopyToGuest, and with messages too big, too deep or too long for CopyFromGuest.
// Like the hostile agent it is a real grpc-js server in its own process (so a test that
// measures the host's memory measures the host alone), serving one scripted misdeed.
//
// This file is both the library side (startRogueAgent) and the server process: run as a
// script, it serves the scenario given as JSON in argv[2].
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type CopyFromGuestRequest,
  type CopyFromGuestResponse,
  CopyFromGuestResponseSchema,
  type CopyToGuestRequest,
  type CopyToGuestResponse,
  CopyToGuestResponseSchema,
  type ExecRequest,
  type ExecResponse,
  ExecResponseSchema,
  FileType,
  guestServiceDefinition,
  MAX_MESSAGE_BYTES,
  type StatPathRequest,
  type StatPathResponse,
  StatPathResponseSchema,
} from "@guestkit/protocol";
import {
  announceWhenBound,
  padded,
  type RunningScriptAgent,
  runIfMain,
  sendWhenWritable,
  startScriptAgent,
} from "./script-agent.js";

/** The misdeeds, by name; each one's description says what the agent does. */
export const ROGUE_SCENARIOS = {
  "exec-endless-output": "Exec: `started`, then 256 KiB of stdout after 256 KiB, forever, and never an exit",
  "exec-padded-output":
    "Exec: `started`, `count` stdout messages of one byte, exit 0; every message padded with `padding` bytes of unknown fields",
  "exec-no-exit-code": "Exec: `started`, some stdout, then the call ends with status OK and no `exit_code`",
  "exec-giant-texts": "Exec: an exit whose start_error is 14 MiB and signal name 1 MiB long (within the message limit)",
  "exec-oversized-message": "Exec: one stdout message larger than MAX_MESSAGE_BYTES",
  "exec-silent": "Exec: `started`, then nothing at all (the connection itself stays healthy)",
  "stat-giant-texts": "StatPath: an error 14 MiB long with a 1 MiB error code",
  "stat-silent": "StatPath: never answers",
  "copyto-early-success": "CopyToGuest: answers success as soon as the first message arrives",
  "copyto-giant-texts": "CopyToGuest: answers failure with an error of 12 MiB, an error path and code of 1 MiB",
  "copyfrom-deep": "CopyFromGuest: `root`, then directories nested `depth` levels deep, then a file at the bottom",
  "copyfrom-long-name": "CopyFromGuest: `root`, then a file whose name is 300 bytes long",
  "copyfrom-oversized-message": "CopyFromGuest: a file whose one data message is larger than MAX_MESSAGE_BYTES",
  "copyfrom-giant-error": "CopyFromGuest: an `error` whose message is 12 MiB long, its path and code 1 MiB",
} as const;

/** The name of a rogue scenario. */
export type RogueScenario = keyof typeof ROGUE_SCENARIOS;

/** What startRogueAgent needs. */
export interface RogueAgentOptions {
  scenario: RogueScenario;
  /** Nesting for `copyfrom-deep`; default 5000. */
  depth?: number;
  /** Output messages for `exec-padded-output`; default 100. */
  count?: number;
  /** Bytes of unknown fields `exec-padded-output` adds to each message; default 8 MiB. */
  padding?: number;
}

/** A running rogue agent. */
export type RogueAgent = RunningScriptAgent;

const SCRIPT = fileURLToPath(import.meta.url);
const MiB = 1024 * 1024;

/** Starts a rogue agent for one scenario and resolves once it accepts connections. */
export async function startRogueAgent(options: RogueAgentOptions): Promise<RogueAgent> {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-rogue-"));
  const socketPath = join(dir, "agent.sock");
  const config: ServeConfig = {
    socketPath,
    scenario: options.scenario,
    depth: options.depth ?? 5000,
    count: options.count ?? 100,
    padding: options.padding ?? 8 * MiB,
  };
  return startScriptAgent("rogue agent", SCRIPT, config, dir);
}

interface ServeConfig {
  socketPath: string;
  scenario: RogueScenario;
  depth: number;
  count: number;
  padding: number;
}

type ExecCall = grpc.ServerDuplexStream<ExecRequest, ExecResponse>;
type CopyFromCall = grpc.ServerWritableStream<CopyFromGuestRequest, CopyFromGuestResponse>;

type ExecResponseInit = NonNullable<MessageInitShape<typeof ExecResponseSchema>["response"]>;
type CopyFromResponseInit = NonNullable<MessageInitShape<typeof CopyFromGuestResponseSchema>["response"]>;
const execResponse = (response: ExecResponseInit) => create(ExecResponseSchema, { response });
const copyResponse = (response: CopyFromResponseInit) => create(CopyFromGuestResponseSchema, { response });
const MTIME = 1_700_000_000n;
const dirHeader = (path: string) =>
  copyResponse({ case: "header", value: { path, isDir: true, mode: 0o755, mtime: MTIME } });
const fileHeader = (path: string, size: number) =>
  copyResponse({ case: "header", value: { path, size: BigInt(size), mode: 0o644, mtime: MTIME } });
const endOf = (final = false) => copyResponse({ case: "end", value: { final } });

async function exec(config: ServeConfig, call: ExecCall): Promise<void> {
  call.on("error", () => undefined);
  // Whatever the host sends is read and ignored.
  call.on("data", () => undefined);
  const started = execResponse({ case: "started", value: { pid: 4242 } });
  switch (config.scenario) {
    case "exec-endless-output": {
      await sendWhenWritable(call, started);
      const chunk = Buffer.alloc(256 * 1024, 0x78);
      while (await sendWhenWritable(call, execResponse({ case: "stdout", value: chunk })));
      return;
    }
    case "exec-padded-output": {
      const send = (response: ExecResponseInit) =>
        sendWhenWritable(call, padded(execResponse(response), config.padding));
      await send({ case: "started", value: { pid: 4242 } });
      for (let i = 0; i < config.count; i += 1) {
        if (!(await send({ case: "stdout", value: Buffer.from("o") }))) return;
      }
      await send({ case: "exit", value: { code: 0 } });
      await send({ case: "exitCode", value: 0 });
      call.end();
      return;
    }
    case "exec-no-exit-code":
      await sendWhenWritable(call, started);
      await sendWhenWritable(call, execResponse({ case: "stdout", value: Buffer.from("partial output\n") }));
      call.end();
      return;
    case "exec-giant-texts":
      await sendWhenWritable(
        call,
        execResponse({
          case: "exit",
          value: { code: 126, startFailed: true, startError: "e".repeat(14 * MiB), signal: "S".repeat(MiB) },
        }),
      );
      await sendWhenWritable(call, execResponse({ case: "exitCode", value: 126 }));
      call.end();
      return;
    case "exec-oversized-message":
      await sendWhenWritable(call, started);
      await sendWhenWritable(
        call,
        execResponse({ case: "stdout", value: Buffer.alloc(MAX_MESSAGE_BYTES + 1024, 0x79) }),
      );
      call.end();
      return;
    case "exec-silent":
      await sendWhenWritable(call, started);
      return;
    default:
      call.end();
  }
}

function statPath(
  config: ServeConfig,
  call: grpc.ServerUnaryCall<StatPathRequest, StatPathResponse>,
  done: grpc.sendUnaryData<StatPathResponse>,
) {
  switch (config.scenario) {
    case "stat-giant-texts":
      done(null, create(StatPathResponseSchema, { error: "x".repeat(14 * MiB), errorCode: "C".repeat(MiB) }));
      return;
    case "stat-silent":
      return;
    default:
      // copyTo asks about its destination first: a path ending in /new does not exist,
      // anything else is a directory.
      done(
        null,
        call.request.path.endsWith("/new")
          ? create(StatPathResponseSchema, { exists: false })
          : create(StatPathResponseSchema, { exists: true, isDir: true, mode: 0o755, fileType: FileType.DIRECTORY }),
      );
  }
}

function copyToGuest(
  config: ServeConfig,
  call: grpc.ServerReadableStream<CopyToGuestRequest, CopyToGuestResponse>,
  done: grpc.sendUnaryData<CopyToGuestResponse>,
) {
  call.on("error", () => undefined);
  call.once("data", () => {
    if (config.scenario === "copyto-early-success") {
      done(null, create(CopyToGuestResponseSchema, { success: true, bytesWritten: 1n, entriesWritten: 1n }));
    } else {
      done(
        null,
        create(CopyToGuestResponseSchema, {
          success: false,
          error: "y".repeat(12 * MiB),
          errorPath: "/".repeat(MiB),
          errorCode: "Z".repeat(MiB),
        }),
      );
    }
  });
  call.on("data", () => undefined);
}

async function copyFromGuest(config: ServeConfig, call: CopyFromCall): Promise<void> {
  call.on("error", () => undefined);
  const script = (function* (): Generator<CopyFromGuestResponse> {
    switch (config.scenario) {
      case "copyfrom-deep": {
        let path = "root";
        yield dirHeader(path);
        yield endOf();
        for (let level = 0; level < config.depth; level += 1) {
          path += "/d";
          yield dirHeader(path);
          yield endOf();
        }
        yield fileHeader(`${path}/bottom`, 4);
        yield copyResponse({ case: "data", value: Buffer.from("deep") });
        yield endOf(true);
        return;
      }
      case "copyfrom-long-name":
        yield dirHeader("root");
        yield endOf();
        yield fileHeader(`root/${"n".repeat(300)}`, 4);
        yield copyResponse({ case: "data", value: Buffer.from("long") });
        yield endOf(true);
        return;
      case "copyfrom-oversized-message":
        yield fileHeader("root", MAX_MESSAGE_BYTES + 1024);
        yield copyResponse({ case: "data", value: Buffer.alloc(MAX_MESSAGE_BYTES + 1024, 0x7a) });
        yield endOf(true);
        return;
      case "copyfrom-giant-error":
        yield copyResponse({
          case: "error",
          value: { message: "m".repeat(12 * MiB), path: "/".repeat(MiB), code: "K".repeat(MiB) },
        });
        return;
      default:
        yield endOf(true);
    }
  })();
  for (const message of script) if (!(await sendWhenWritable(call, message))) return;
  call.end();
}

async function serve(config: ServeConfig): Promise<void> {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    // A rogue does not respect the limits it should.
    "grpc.max_send_message_length": -1,
  });
  server.addService(
    guestServiceDefinition as unknown as grpc.ServiceDefinition,
    {
      exec: (call: ExecCall) => void exec(config, call),
      statPath: (
        call: grpc.ServerUnaryCall<StatPathRequest, StatPathResponse>,
        done: grpc.sendUnaryData<StatPathResponse>,
      ) => statPath(config, call, done),
      copyToGuest: (
        call: grpc.ServerReadableStream<CopyToGuestRequest, CopyToGuestResponse>,
        done: grpc.sendUnaryData<CopyToGuestResponse>,
      ) => copyToGuest(config, call, done),
      copyFromGuest: (call: CopyFromCall) => void copyFromGuest(config, call),
    } as unknown as grpc.UntypedServiceImplementation,
  );
  await announceWhenBound("rogue agent", server, config.socketPath);
}

runIfMain("rogue agent", SCRIPT, serve);
