// The Exec call: one command per stream. The first request is `start`; then stdin,
// stdin_close, resize and signal messages while the command runs. The responses are
// `started`, output as it is produced, `exit`, and `exit_code` last.
import { basename } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  describeError,
  type ExecRequest,
  type ExecResponse,
  ExecResponseSchema,
  type GuestServiceHandlers,
} from "@guestkit/protocol";
import { logError, logInfo } from "../log.js";
import { asksForDataConnection, type DataConnections } from "../transport/data-connections.js";
import { grpcError } from "../transport/grpc-errors.js";
import { onWritable, sendMessage } from "../transport/stream-writer.js";
import { execExitOf } from "./exec-exit.js";
import { launchCommand } from "./exec-launch.js";
import { OutputForwarder } from "./exec-output.js";
import { ExecOutputSink } from "./exec-output-sink.js";
import { ExecRequestError, type ExecSpec, parseExecStart, parseWindowSize } from "./exec-request.js";
import { StdinQueue } from "./exec-stdin.js";
import type { CommandCgroups } from "./process-cgroup.js";
import { signalProcessGroup, terminateTree } from "./process-group.js";
import type { ProcessExit, ProcessHandle, StartFailure } from "./process-handle.js";
import type { RunningCommands } from "./running-commands.js";
import { parseSignalName } from "./signal-names.js";

type ExecCall = grpc.ServerDuplexStream<ExecRequest, ExecResponse>;
type Response = NonNullable<MessageInitShape<typeof ExecResponseSchema>["response"]>;

/**
 * The Exec handler; every command it starts is registered in `commands`, and runs in a
 * cgroup of its own under `cgroups` where the agent has them. A client that asks gets
 * a command's heavy output on a data connection from `data` (exec-output-sink.ts).
 */
export function createExecHandler(
  commands: RunningCommands,
  cgroups: CommandCgroups | undefined,
  data: DataConnections,
): GuestServiceHandlers["exec"] {
  return (call) => {
    serveExec(call, commands, cgroups, asksForDataConnection(call) ? data : undefined).catch((error: unknown) => {
      logError(`exec: ${describeError(error)}`);
      failCall(call, grpcError(grpc.status.INTERNAL, `exec failed in the agent: ${describeError(error)}`));
    });
  };
}

async function serveExec(
  call: ExecCall,
  commands: RunningCommands,
  cgroups: CommandCgroups | undefined,
  data: DataConnections | undefined,
): Promise<void> {
  // Not destroyed on return: the call outlives the reading.
  const requests = call.iterator({ destroyOnReturn: false }) as AsyncIterator<ExecRequest>;
  const first = await nextRequest(requests);
  if (call.cancelled) return;
  if (first?.request.case !== "start") {
    const got = first ? (first.request.case ?? "an empty message") : "the end of the stream";
    failCall(call, grpcError(grpc.status.INVALID_ARGUMENT, `the first Exec message must be start, got ${got}`));
    return;
  }
  let spec: ExecSpec;
  try {
    spec = parseExecStart(first.request.value);
  } catch (error) {
    failCall(call, asStatus(error));
    return;
  }
  const name = loggableName(spec.argv[0] ?? "");
  const launched = await launchCommand(spec, cgroups);
  if (!launched.ok) {
    logInfo(`exec ${name}: not started (${launched.code})`);
    if (!call.cancelled) sendStartFailure(call, spec.tty, launched);
    return;
  }
  logInfo(`exec ${name}: started, pid ${launched.process.pid}${spec.tty ? ", tty" : ""}`);
  const pid = launched.process.pid;
  const exit = await new CommandCall(call, requests, launched.process, spec, commands, data).run();
  const how = exit ? `code ${exit.code}${exit.signal ? ` (${exit.signal})` : ""}` : "killed: the call ended first";
  logInfo(`exec ${name}: pid ${pid} ended, ${how}`);
}

/** One started command and its call, from `started` to `exit_code`. */
class CommandCall {
  readonly #call: ExecCall;
  readonly #requests: AsyncIterator<ExecRequest>;
  readonly #process: ProcessHandle;
  readonly #spec: ExecSpec;
  readonly #commands: RunningCommands;
  readonly #output: OutputForwarder;
  readonly #sink: ExecOutputSink;
  #done = false;
  #aborted = false;
  #timedOut = false;
  #terminating: Promise<void> | undefined;
  #exit: ProcessExit | undefined;

  constructor(
    call: ExecCall,
    requests: AsyncIterator<ExecRequest>,
    process: ProcessHandle,
    spec: ExecSpec,
    commands: RunningCommands,
    data: DataConnections | undefined,
  ) {
    this.#call = call;
    this.#requests = requests;
    this.#process = process;
    this.#spec = spec;
    this.#commands = commands;
    this.#sink = new ExecOutputSink(
      {
        send: (response) => this.#send(response),
        onWritable: (listener) => onWritable(call, listener),
        fail: (error) => this.#abort(grpcError(grpc.status.UNAVAILABLE, `Exec: ${error.message}`)),
      },
      data,
    );
    this.#output = new OutputForwarder(process.outputs, this.#sink);
  }

  /** Runs the command to its end; resolves with what was sent as ExecExit, if anything. */
  async run(): Promise<ReturnType<typeof execExitOf> | undefined> {
    const unregister = this.#commands.add({ terminate: () => this.#terminate() });
    const pid = this.#process.pid;
    this.#process.exited.then((exit) => {
      this.#exit = exit;
    });
    // A client that goes away takes its command with it.
    const onCancelled = () => this.#abort();
    this.#call.on("cancelled", onCancelled);
    this.#call.on("close", onCancelled);
    if (this.#call.cancelled) this.#abort();

    this.#send({ case: "started", value: { pid } });
    this.#output.start();
    const timer =
      this.#spec.timeoutMs > 0
        ? setTimeout(() => {
            this.#timedOut = true;
            void this.#terminate();
          }, this.#spec.timeoutMs)
        : undefined;
    this.#readInput().catch((error: unknown) => this.#abort(asStatus(error)));

    // Every path waits here for the process to be reaped: no zombies.
    const exit = await this.#process.exited;
    clearTimeout(timer);
    const outputTruncated = this.#aborted ? false : await this.#output.finishAfterExit();
    this.#output.stop();
    // The output's end on the data connection goes before the exit on the call.
    if (!this.#aborted) {
      await this.#sink.end().catch((error: unknown) => {
        this.#abort(grpcError(grpc.status.UNAVAILABLE, `Exec: ${describeError(error)}`));
      });
    }
    this.#sink.close();
    this.#process.close();
    this.#call.off("cancelled", onCancelled);
    this.#call.off("close", onCancelled);
    // What the command started either is being ended (a timeout, a cancel: shutdown
    // must still wait for that) or was left running on purpose by a command that exited
    // by itself; its cgroup goes once it is empty.
    void (this.#terminating ?? Promise.resolve()).then(() => {
      this.#process.tree.release();
      unregister();
    });
    if (this.#aborted) return undefined;

    const result = execExitOf({ exit, timedOut: this.#timedOut, outputTruncated });
    this.#send({ case: "exit", value: result });
    this.#send({ case: "exitCode", value: result.code });
    this.#done = true;
    this.#call.end();
    return result;
  }

  // Every message is read as it arrives, stdin included (queued in StdinQueue), so that
  // a signal, resize or stdin_close is never held behind stdin the command has not read.
  async #readInput(): Promise<void> {
    const stdin = new StdinQueue(this.#process, (consumed) => this.#send({ case: "stdinConsumed", value: consumed }));
    void this.#process.exited.then(() => stdin.discard());
    let stdinClosed = false;
    for (;;) {
      const request = await nextRequest(this.#requests);
      if (this.#done || this.#aborted || this.#exit) {
        // The command is gone; what the client still sends has nowhere to go.
        if (request === undefined) return;
        continue;
      }
      const message = request?.request;
      switch (message?.case) {
        case undefined:
          if (request === undefined) {
            // Half-close: stdin EOF, as existing hosts expect.
            stdin.close();
            return;
          }
          break; // A message kind this agent does not know: ignored, as protobuf does.
        case "start":
          throw new ExecRequestError("start may only be the first Exec message");
        case "stdin":
          if (stdinClosed) throw new ExecRequestError("stdin after stdin_close");
          // Full only for a client that ignores the credit: HTTP/2 holds it back meanwhile.
          if (!stdin.push(message.value)) await stdin.room();
          break;
        case "stdinClose":
          stdin.close();
          stdinClosed = true;
          break;
        case "resize": {
          const { rows, cols } = parseWindowSize(message.value.rows, message.value.cols, "resize");
          this.#process.resize(rows, cols);
          break;
        }
        case "signal": {
          const signal = parseSignalName(message.value.name);
          if (!signal) {
            throw new ExecRequestError(`unknown signal "${message.value.name}" (use a name like TERM, SIGINT, KILL)`);
          }
          signalProcessGroup(this.#process.pid, signal.name);
          break;
        }
      }
    }
  }

  /** Ends the call without an exit (cancelled, or a bad request) and the command with it. */
  #abort(status?: Partial<grpc.StatusObject> & Error): void {
    if (this.#done || this.#aborted) return;
    this.#aborted = true;
    this.#output.stop();
    this.#sink.close();
    void this.#terminate();
    if (status) failCall(this.#call, status);
  }

  // Everything the command started (its cgroup, or else its session), once.
  #terminate(): Promise<void> {
    this.#terminating ??= terminateTree(this.#process.tree, this.#process.exited);
    return this.#terminating;
  }

  #send(response: Response): boolean {
    const call = this.#call;
    if (this.#done || this.#aborted || call.cancelled || call.destroyed || call.writableEnded) return true;
    return sendMessage(call, create(ExecResponseSchema, { response }));
  }
}

function sendStartFailure(call: ExecCall, tty: boolean, failure: StartFailure): void {
  // In TTY mode everything the client shows comes as stdout, in terminal line endings.
  const line = Buffer.from(`${failure.reason}${tty ? "\r\n" : "\n"}`);
  const write = (response: Response) => call.write(create(ExecResponseSchema, { response }));
  write(tty ? { case: "stdout", value: line } : { case: "stderr", value: line });
  write({
    case: "exit",
    value: { code: failure.code, startFailed: true, startError: failure.reason },
  });
  write({ case: "exitCode", value: failure.code });
  call.end();
}

async function nextRequest(requests: AsyncIterator<ExecRequest>): Promise<ExecRequest | undefined> {
  try {
    const next = await requests.next();
    return next.done ? undefined : next.value;
  } catch {
    // The stream was destroyed (cancelled, connection lost): no more requests.
    return undefined;
  }
}

function failCall(call: ExecCall, status: Partial<grpc.StatusObject> & Error): void {
  if (call.cancelled || call.destroyed || call.writableEnded) return;
  call.emit("error", status);
}

function asStatus(error: unknown): Partial<grpc.StatusObject> & Error {
  if (error instanceof ExecRequestError) return grpcError(grpc.status.INVALID_ARGUMENT, error.message);
  return grpcError(grpc.status.INTERNAL, `exec: ${describeError(error)}`);
}

// Only the program's base name reaches the log: arguments and environment carry secrets,
// and control characters would let a client forge log lines.
function loggableName(command: string): string {
  const name = basename(command).replace(/[^\x20-\x7e]/g, "?");
  return name.length > 64 ? `${name.slice(0, 64)}...` : name;
}
