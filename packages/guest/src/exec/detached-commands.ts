// Detached commands: started by one call, running on after it (framing and rules in
// proto/guest/guest.proto, StartDetached). Each keeps its most recent output in a ring
// (DETACHED_OUTPUT_BYTES, oldest dropped first) and is read as fast as it writes: a
// detached command is never held back by a slow or absent reader. Attached clients get
// the ring's content, then live output; one that does not keep up loses output (and is
// told so) rather than growing the agent's memory. At most MAX_DETACHED_COMMANDS are held,
// which bounds the rings' total.

import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type AttachDetachedRequest,
  type AttachDetachedResponse,
  AttachDetachedResponseSchema,
  ControlDetachedResponseSchema,
  DETACHED_EXITED_KEPT_MS,
  DETACHED_OUTPUT_BYTES,
  type DetachedCommand as DetachedCommandInfo,
  DetachedCommandSchema,
  describeError,
  type ExecExit,
  ExecExitSchema,
  type GuestServiceHandlers,
  ListDetachedResponseSchema,
  MAX_DETACHED_COMMANDS,
  StartDetachedResponseSchema,
} from "@guestkit/protocol";
import { logInfo } from "../log.js";
import { grpcError } from "../transport/grpc-errors.js";
import { execExitOf } from "./exec-exit.js";
import { launchCommand } from "./exec-launch.js";
import { ExecRequestError, parseExecStart, parseWindowSize } from "./exec-request.js";
import type { CommandCgroups } from "./process-cgroup.js";
import { signalProcessGroup, terminateTree } from "./process-group.js";
import type { ProcessHandle } from "./process-handle.js";
import type { RunningCommands } from "./running-commands.js";
import { parseSignalName } from "./signal-names.js";

type Kind = "stdout" | "stderr";
type AttachCall = grpc.ServerDuplexStream<AttachDetachedRequest, AttachDetachedResponse>;

/** A client following a command's output. */
interface Attacher {
  readonly call: AttachCall;
  // Its call pushed back: output goes nowhere until it drains.
  waiting: boolean;
  // Output was dropped for it since it last got some.
  behind: boolean;
}

const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** The most recent output of one command, up to `capacity` bytes. */
class OutputRing {
  readonly #chunks: Array<{ kind: Kind; data: Buffer }> = [];
  readonly #capacity: number;
  #bytes = 0;
  dropped = false;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  push(kind: Kind, data: Buffer): void {
    // A chunk larger than the ring keeps only its tail.
    const kept = data.length > this.#capacity ? data.subarray(data.length - this.#capacity) : data;
    if (kept !== data) this.dropped = true;
    this.#chunks.push({ kind, data: Buffer.from(kept) });
    this.#bytes += kept.length;
    while (this.#bytes > this.#capacity) {
      const oldest = this.#chunks.shift();
      if (!oldest) break;
      this.#bytes -= oldest.data.length;
      this.dropped = true;
    }
  }

  get bytes(): number {
    return this.#bytes;
  }

  snapshot(): ReadonlyArray<{ kind: Kind; data: Buffer }> {
    return [...this.#chunks];
  }
}

/** One detached command. */
class DetachedCommand {
  readonly id: string;
  readonly process: ProcessHandle;
  readonly command: string;
  readonly tty: boolean;
  readonly startedAt = Date.now();
  readonly ring = new OutputRing(DETACHED_OUTPUT_BYTES);
  exitedAt = 0;
  exit: ExecExit | undefined;
  readonly #attached = new Set<Attacher>();
  #timedOut = false;
  #terminating: Promise<void> | undefined;

  constructor(id: string, process: ProcessHandle, command: string, tty: boolean) {
    this.id = id;
    this.process = process;
    this.command = command;
    this.tty = tty;
  }

  /** Reads the output until the end and records the exit; resolves once it was reaped. */
  async run(timeoutMs: number, onExit: () => void): Promise<void> {
    const ended = this.process.outputs.map(
      ({ kind, stream }) =>
        new Promise<void>((resolve) => {
          stream.on("data", (data: Buffer) => this.#output(kind, data));
          stream.once("end", resolve);
          stream.once("close", resolve);
          stream.once("error", () => resolve());
        }),
    );
    const timer = timeoutMs > 0 ? setTimeout(() => this.#onTimeout(), timeoutMs) : undefined;
    const exit = await this.process.exited;
    clearTimeout(timer);
    // A background process holding the output: what came up to a moment after the exit.
    await Promise.race([Promise.all(ended), new Promise((resolve) => setTimeout(resolve, 500))]);
    this.process.close();
    this.exit = create(ExecExitSchema, execExitOf({ exit, timedOut: this.#timedOut, outputTruncated: false }));
    this.exitedAt = Date.now();
    for (const attacher of this.#attached) {
      attacher.call.write(create(AttachDetachedResponseSchema, { response: { case: "exit", value: this.exit } }));
      attacher.call.end();
    }
    this.#attached.clear();
    void (this.#terminating ?? Promise.resolve()).then(() => this.process.tree.release());
    onExit();
  }

  #onTimeout(): void {
    this.#timedOut = true;
    void this.terminate();
  }

  #output(kind: Kind, data: Buffer): void {
    this.ring.push(kind, data);
    for (const attacher of this.#attached) this.#send(attacher, kind, data);
  }

  #send(attacher: Attacher, kind: Kind, data: Buffer): void {
    const { call } = attacher;
    if (call.cancelled || call.writableEnded) return;
    // A client that does not keep up loses output (and is told), rather than the agent
    // holding it: the call pushed back, and nothing more goes to it until it drains.
    if (attacher.waiting) {
      attacher.behind = true;
      return;
    }
    if (attacher.behind) {
      attacher.behind = false;
      call.write(create(AttachDetachedResponseSchema, { response: { case: "dropped", value: {} } }));
    }
    if (!call.write(create(AttachDetachedResponseSchema, { response: { case: kind, value: data } }))) {
      attacher.waiting = true;
      call.once("drain", () => {
        attacher.waiting = false;
      });
    }
  }

  /** Replays what is kept; with `follow`, keeps the call for live output until the exit. */
  attach(call: AttachCall, follow: boolean): void {
    if (this.ring.dropped) {
      call.write(create(AttachDetachedResponseSchema, { response: { case: "dropped", value: {} } }));
    }
    for (const { kind, data } of this.ring.snapshot()) {
      call.write(create(AttachDetachedResponseSchema, { response: { case: kind, value: data } }));
    }
    if (this.exit || !follow) {
      if (this.exit) call.write(create(AttachDetachedResponseSchema, { response: { case: "exit", value: this.exit } }));
      call.end();
      return;
    }
    const attacher: Attacher = { call, behind: false, waiting: false };
    this.#attached.add(attacher);
    // Detaching (the client going away) never stops the command.
    const detach = () => this.#attached.delete(attacher);
    call.on("cancelled", detach);
    call.on("close", detach);
  }

  /** TERM to everything the command started, KILL after the grace; resolves once it is gone. */
  terminate(): Promise<void> {
    this.#terminating ??= terminateTree(this.process.tree, this.process.exited);
    return this.#terminating;
  }

  info(): DetachedCommandInfo {
    return create(DetachedCommandSchema, {
      id: this.id,
      pid: this.process.pid,
      command: this.command,
      running: this.exit === undefined,
      startedAtMs: BigInt(this.startedAt),
      exitedAtMs: BigInt(this.exitedAt),
      ...(this.exit ? { exit: this.exit } : {}),
      outputDropped: this.ring.dropped,
      tty: this.tty,
    });
  }
}

/** The agent's detached commands and the four handlers that serve them. */
export class DetachedCommands {
  readonly #byId = new Map<string, DetachedCommand>();
  readonly #commands: RunningCommands;
  readonly #cgroups: CommandCgroups | undefined;

  constructor(commands: RunningCommands, cgroups: CommandCgroups | undefined) {
    this.#commands = commands;
    this.#cgroups = cgroups;
  }

  readonly start: GuestServiceHandlers["startDetached"] = (call, callback) => {
    this.#start(call.request.name, call.request.stdin, call.request.start).then(
      (response) => callback(null, response),
      (error: unknown) => callback(asStatus(error)),
    );
  };

  readonly list: GuestServiceHandlers["listDetached"] = (_call, callback) => {
    this.#forgetOld();
    callback(null, create(ListDetachedResponseSchema, { commands: [...this.#byId.values()].map((c) => c.info()) }));
  };

  readonly attach: GuestServiceHandlers["attachDetached"] = (call) => {
    call.on("error", () => {});
    let command: DetachedCommand | undefined;
    call.on("data", (request: AttachDetachedRequest) => {
      const message = request.request;
      try {
        if (!command) {
          if (message.case !== "attach") throw new ExecRequestError("the first AttachDetached message must be attach");
          command = this.#get(message.value.id);
          command.attach(call, message.value.follow);
          return;
        }
        if (command.exit) return;
        switch (message.case) {
          case "stdin":
            void command.process.writeStdin(message.value);
            break;
          case "stdinClose":
            void command.process.closeStdin();
            break;
          case "signal": {
            const signal = parseSignalName(message.value.name);
            if (!signal) throw new ExecRequestError(`unknown signal "${message.value.name}"`);
            signalProcessGroup(command.process.pid, signal.name);
            break;
          }
          case "resize": {
            const { rows, cols } = parseWindowSize(message.value.rows, message.value.cols, "resize");
            command.process.resize(rows, cols);
            break;
          }
          case "attach":
            throw new ExecRequestError("attach may only be the first message");
        }
      } catch (error) {
        if (!call.writableEnded) call.emit("error", asStatus(error));
      }
    });
    call.on("end", () => {
      // The client half-closed: it sends nothing more; output still flows to it.
    });
  };

  readonly control: GuestServiceHandlers["controlDetached"] = (call, callback) => {
    try {
      const command = this.#get(call.request.id);
      const action = call.request.action;
      if (action.case === "signal") {
        const signal = parseSignalName(action.value);
        if (!signal) throw new ExecRequestError(`unknown signal "${action.value}"`);
        if (!command.exit) signalProcessGroup(command.process.pid, signal.name);
        callback(null, create(ControlDetachedResponseSchema, {}));
      } else if (action.case === "kill") {
        // Answered once the command and what it started are gone.
        command.terminate().then(
          () => callback(null, create(ControlDetachedResponseSchema, {})),
          (error: unknown) => callback(asStatus(error)),
        );
      } else if (action.case === "remove") {
        if (!command.exit) {
          throw Object.assign(
            grpcError(grpc.status.FAILED_PRECONDITION, `${command.id} is still running (kill it first)`),
          );
        }
        this.#byId.delete(command.id);
        callback(null, create(ControlDetachedResponseSchema, {}));
      } else {
        throw new ExecRequestError("ControlDetached needs signal, kill or remove");
      }
    } catch (error) {
      callback(asStatus(error));
    }
  };

  async #start(name: string, stdin: boolean, start: Parameters<typeof parseExecStart>[0] | undefined) {
    if (!start) throw new ExecRequestError("StartDetached needs start");
    const spec = parseExecStart(start);
    if (name !== "" && !NAME_PATTERN.test(name)) {
      throw new ExecRequestError("a name is 1-64 letters, digits, '.', '_' or '-'");
    }
    this.#forgetOld();
    if (name !== "" && this.#byId.has(name)) {
      throw grpcError(grpc.status.ALREADY_EXISTS, `a detached command named ${name} exists already`);
    }
    if (this.#byId.size >= MAX_DETACHED_COMMANDS) this.#forgetOldestExited();
    if (this.#byId.size >= MAX_DETACHED_COMMANDS) {
      throw grpcError(
        grpc.status.RESOURCE_EXHAUSTED,
        `${MAX_DETACHED_COMMANDS} detached commands are running already (kill or wait for one)`,
      );
    }
    const id = name || `d-${randomBytes(6).toString("hex")}`;
    const launched = await launchCommand(spec, this.#cgroups);
    if (!launched.ok) {
      const exit = create(ExecExitSchema, { code: launched.code, startFailed: true, startError: launched.reason });
      return create(StartDetachedResponseSchema, { id, pid: 0, exit });
    }
    // Another start may have taken the name while this one was launching.
    if (this.#byId.has(id)) {
      launched.process.tree.signal("SIGKILL");
      throw grpcError(grpc.status.ALREADY_EXISTS, `a detached command named ${name} exists already`);
    }
    const command = new DetachedCommand(id, launched.process, basenameOf(spec.argv[0] ?? ""), spec.tty);
    this.#byId.set(id, command);
    if (!stdin) void launched.process.closeStdin();
    const unregister = this.#commands.add({ terminate: () => command.terminate() });
    logInfo(`detached ${command.command}: started as ${id}, pid ${launched.process.pid}`);
    void command.run(spec.timeoutMs, () => {
      unregister();
      logInfo(`detached ${id}: ended, code ${command.exit?.code}`);
    });
    return create(StartDetachedResponseSchema, { id, pid: launched.process.pid });
  }

  #get(id: string): DetachedCommand {
    const command = this.#byId.get(id);
    if (!command) throw grpcError(grpc.status.NOT_FOUND, `no detached command ${JSON.stringify(id.slice(0, 80))}`);
    return command;
  }

  // Exited commands are listed for DETACHED_EXITED_KEPT_MS.
  #forgetOld(): void {
    const now = Date.now();
    for (const [id, command] of this.#byId) {
      if (command.exit && now - command.exitedAt > DETACHED_EXITED_KEPT_MS) this.#byId.delete(id);
    }
  }

  #forgetOldestExited(): void {
    let oldest: DetachedCommand | undefined;
    for (const command of this.#byId.values()) {
      if (command.exit && (!oldest || command.exitedAt < oldest.exitedAt)) oldest = command;
    }
    if (oldest) this.#byId.delete(oldest.id);
  }
}

function basenameOf(command: string): string {
  return command.slice(command.lastIndexOf("/") + 1);
}

function asStatus(error: unknown): Partial<grpc.StatusObject> & Error {
  if (error instanceof ExecRequestError) return grpcError(grpc.status.INVALID_ARGUMENT, error.message);
  if (typeof (error as { code?: unknown }).code === "number") return error as Partial<grpc.StatusObject> & Error;
  return grpcError(grpc.status.INTERNAL, `detached: ${describeError(error)}`);
}
