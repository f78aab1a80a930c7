// Test support for Exec: a real grpc-js client on the agent's Unix socket, and "run one
// exec and collect everything it sent".
import { readdirSync, readFileSync } from "node:fs";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type ExecExit,
  type ExecRequest,
  ExecRequestSchema,
  type ExecResponse,
  type ExecStartSchema,
  GuestServiceClient,
} from "@guestkit/protocol";
import { type AgentProcess, startAgent } from "../../testkit/src/agent-process.js";

export type ExecStartInit = MessageInitShape<typeof ExecStartSchema>;
export type ExecCall = grpc.ClientDuplexStream<ExecRequest, ExecResponse>;

/** Everything an Exec call produced. */
export interface ExecResult {
  /** Response kinds in arrival order: "started", "stdout", "stderr", "exit", "exitCode". */
  readonly kinds: string[];
  readonly pid: number | undefined;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly exit: ExecExit | undefined;
  readonly exitCode: number | undefined;
  readonly status: grpc.StatusObject;
}

/** A started agent and a client connected to it. */
export interface AgentClient {
  readonly agent: AgentProcess;
  readonly client: GuestServiceClient;
  close(): Promise<void>;
}

/** Starts the real agent binary on a temp socket and connects a client. */
export async function startAgentClient(): Promise<AgentClient> {
  const agent = await startAgent();
  const client = new GuestServiceClient(`unix:${agent.socketPath}`, grpc.credentials.createInsecure());
  return {
    agent,
    client,
    async close() {
      client.close();
      await agent.stop();
    },
  };
}

/** An ExecRequest carrying `start`. */
export function startRequest(start: ExecStartInit): ExecRequest {
  return create(ExecRequestSchema, { request: { case: "start", value: start } });
}

/** An ExecRequest carrying stdin bytes. */
export function stdinRequest(data: string | Uint8Array): ExecRequest {
  const value = typeof data === "string" ? Buffer.from(data) : data;
  return create(ExecRequestSchema, { request: { case: "stdin", value } });
}

/** Other ExecRequests by kind. */
export const requests = {
  stdinClose: () => create(ExecRequestSchema, { request: { case: "stdinClose", value: {} } }),
  signal: (name: string) => create(ExecRequestSchema, { request: { case: "signal", value: { name } } }),
  resize: (rows: number, cols: number) =>
    create(ExecRequestSchema, { request: { case: "resize", value: { rows, cols } } }),
};

/** Collects everything a call sends; resolves once it has both ended and a status. */
export function collect(call: ExecCall, onResponse?: (response: ExecResponse) => void): Promise<ExecResult> {
  const kinds: string[] = [];
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let pid: number | undefined;
  let exit: ExecExit | undefined;
  let exitCode: number | undefined;
  return new Promise((resolve) => {
    let ended = false;
    let status: grpc.StatusObject | undefined;
    const settle = () => {
      if (!ended || !status) return;
      resolve({
        kinds,
        pid,
        stdout: Buffer.concat(stdout),
        stderr: Buffer.concat(stderr),
        exit,
        exitCode,
        status,
      });
    };
    call.on("data", (response: ExecResponse) => {
      const message = response.response;
      if (message.case) kinds.push(message.case);
      switch (message.case) {
        case "started":
          pid = message.value.pid;
          break;
        case "stdout":
          stdout.push(Buffer.from(message.value));
          break;
        case "stderr":
          stderr.push(Buffer.from(message.value));
          break;
        case "exit":
          exit = message.value;
          break;
        case "exitCode":
          exitCode = message.value;
          break;
      }
      onResponse?.(response);
    });
    call.on("error", () => {
      ended = true;
      settle();
    });
    call.on("end", () => {
      ended = true;
      settle();
    });
    call.on("status", (s: grpc.StatusObject) => {
      status = s;
      settle();
    });
  });
}

/** Options of runExec. */
export interface RunExecOptions {
  /** Sent as stdin messages after start. */
  stdin?: Array<string | Uint8Array>;
  /** Half-close after stdin (default true). */
  halfClose?: boolean;
  /** Called for every response, with the call (to send more). */
  onResponse?: (response: ExecResponse, call: ExecCall) => void;
}

/** Runs one Exec: start, optional stdin, half-close; collects everything. */
export async function runExec(
  client: GuestServiceClient,
  start: ExecStartInit,
  options: RunExecOptions = {},
): Promise<ExecResult> {
  const call = client.exec(new grpc.Metadata());
  const result = collect(call, (response) => options.onResponse?.(response, call));
  call.write(startRequest(start));
  for (const data of options.stdin ?? []) call.write(stdinRequest(data));
  if (options.halfClose ?? true) call.end();
  return result;
}

/** Text of a buffer. */
export function text(bytes: Buffer): string {
  return bytes.toString("utf8");
}

/** Processes whose process group is `pgid`, zombies included, from /proc. */
export function groupMembers(pgid: number): Array<{ pid: number; ppid: number; state: string }> {
  const found: Array<{ pid: number; ppid: number; state: string }> = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue;
    }
    const [state = "", ppid = "", pgrp = ""] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(pgrp) === pgid) found.push({ pid: Number(name), ppid: Number(ppid), state });
  }
  return found;
}

/**
 * Whether nothing of process group `pgid` runs any more and the agent holds no zombie
 * of it. Grandchildren reparented to init stay zombies until init reaps them, which on
 * some machines takes seconds; that is init's business, not the agent's.
 */
export function groupGone(pgid: number, agentPid: number): boolean {
  return groupMembers(pgid).every((p) => p.state === "Z" && p.ppid !== agentPid && p.pid !== pgid);
}

/** Waits until `check` is true, polling; throws after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Kills whatever is left of a process group (test cleanup). */
export function killGroup(pgid: number | undefined): void {
  if (!pgid) return;
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // Already gone.
  }
}
