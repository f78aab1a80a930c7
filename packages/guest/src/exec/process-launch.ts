// The launcher: how every command starts, on three pipes or on a terminal
// (process-terminal.ts). Whatever the mode, the command gets a session and process
// group of its own, its cgroup before anything of it runs (process-cgroup.ts), the
// user and group it runs as with that group as its only one, every signal at its
// default, and no descriptor of the agent's but its stdio (the terminal masters
// node-pty opens are not close-on-exec). The agent's own state is never changed for it.
//
// One engine does all of that between its clone and the exec: @guestkit/posix-spawn,
// which also does not copy the agent's memory map as fork does (that copy was the
// larger part of an exec's time in the agent, bench/README.md). Where the addon is
// missing or the kernel has no pidfds, Node's spawn starts the trampoline
// (exec-trampoline.ts) instead, which does the same steps in a Node of its own before it
// becomes the command: correct, at the cost of a Node start per command.
import { type ChildProcess, spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { describeError, errnoOf } from "@guestkit/protocol";
import { trampolineInvocation } from "../exec-trampoline-env.js";
import { importOptional } from "../optional-package.js";
import { startExitCode } from "./exec-exit.js";
import { commandTree } from "./process-group.js";
import type {
  LaunchOptions,
  LaunchResult,
  ProcessExit,
  ProcessHandle,
  ProcessTree,
  StartFailure,
} from "./process-handle.js";
import { type CommandTerminal, openTerminal } from "./process-terminal.js";
import { signalNumberOf } from "./signal-names.js";

const addon = await importOptional("@guestkit/posix-spawn", () => import("@guestkit/posix-spawn"));

/** Why commands are started through Node's spawn (fork) rather than posix_spawn; undefined when they are not. */
export const posixSpawnFallbackReason: string | undefined =
  "module" in addon ? addon.module.posixSpawnUnavailable() : addon.reason;

/** Starts the child on pipes, or on `terminal`; throws what failed. */
type Engine = (options: LaunchOptions, terminal: CommandTerminal | undefined) => Promise<ProcessHandle>;

const addonEngine: Engine | undefined =
  "module" in addon && posixSpawnFallbackReason === undefined
    ? async (options, terminal) => {
        const { posixSpawn, posixSpawnOnTerminal } = addon.module;
        const target = {
          file: options.file,
          argv: options.argv,
          env: options.env,
          cwd: options.cwd,
          ...(options.runAs ? { runAs: options.runAs } : {}),
          ...(options.cgroup ? { cgroup: options.cgroup.path } : {}),
        };
        if (terminal) {
          const child = posixSpawnOnTerminal(target, terminal.slave);
          return terminal.handle(child.pid, child.exited, commandTree(child.pid, options.cgroup));
        }
        const child = posixSpawn(target);
        return pipeHandle(child.pid, child, child.exited, commandTree(child.pid, options.cgroup));
      }
    : undefined;

// Node's spawn of the trampoline: what serves when the addon cannot.
const nodeEngine: Engine = async (options, terminal) => {
  const invocation = trampolineInvocation(options);
  const child = spawn(process.execPath, invocation.args, {
    cwd: options.cwd,
    // setsid() before the exec, which libuv waits for: the group exists once this returns.
    detached: true,
    env: invocation.env,
    stdio: terminal ? [terminal.slave, terminal.slave, terminal.slave] : "pipe",
  });
  // The exit listener goes on first, so no exit is missed whatever happens next.
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal: signal ? signalNumberOf(signal) : null }));
  });
  // libuv reports exec failures through its own pipe, as an 'error' on the next tick.
  if (child.pid === undefined) throw await new Promise<unknown>((resolve) => child.once("error", resolve));
  child.on("error", () => {
    // Only spawn failures come here, and that case was handled above.
  });
  const tree = commandTree(child.pid, options.cgroup);
  if (terminal) return terminal.handle(child.pid, exited, tree);
  const stdio = child as ChildProcess & { stdin: Writable; stdout: Readable; stderr: Readable };
  return pipeHandle(child.pid, stdio, exited, tree);
};

/** Starts the command; resolves once it runs (it has exec'd), or with the reason it could not start. */
export function launchProcess(options: LaunchOptions): Promise<LaunchResult> {
  return launch(options, addonEngine ?? nodeEngine);
}

/** launchProcess through the trampoline, as where the addon is missing (for its test). */
export function launchWithNode(options: LaunchOptions): Promise<LaunchResult> {
  return launch(options, nodeEngine);
}

async function launch(options: LaunchOptions, engine: Engine): Promise<LaunchResult> {
  const [command = ""] = options.argv;
  let terminal: CommandTerminal | undefined;
  try {
    if (options.terminal) terminal = openTerminal(options.terminal.rows, options.terminal.cols);
  } catch (error) {
    return { ok: false, code: 126, reason: `${command}: cannot start on a terminal: ${describeError(error)}` };
  }
  try {
    return { ok: true, process: await engine(options, terminal) };
  } catch (error) {
    terminal?.close();
    return { ok: false, ...startFailureOf(command, error) };
  }
}

/** The ProcessHandle of a child on three pipes, however it was started. */
function pipeHandle(
  pid: number,
  { stdin, stdout, stderr }: { stdin: Writable; stdout: Readable; stderr: Readable },
  exited: Promise<ProcessExit>,
  tree: ProcessTree,
): ProcessHandle {
  // EPIPE once the command closed its stdin or exited: the bytes have nowhere to go.
  stdin.on("error", () => {});
  return {
    pid,
    tree,
    outputs: [
      { kind: "stdout", stream: stdout },
      { kind: "stderr", stream: stderr },
    ],
    writeStdin(data) {
      if (!stdin.writable) return Promise.resolve();
      return new Promise((resolve) => stdin.write(data, () => resolve()));
    },
    async closeStdin() {
      if (stdin.writable) stdin.end();
    },
    resize() {},
    exited,
    close() {
      stdin.destroy();
      stdout.destroy();
      stderr.destroy();
    },
  };
}

// One line for a start that failed, by the step of the child that failed (posix_spawn
// names it in `syscall`) and its errno; the exit code from the one mapping.
function startFailureOf(command: string, error: unknown): StartFailure {
  const errno = errnoOf(error);
  const step = (error as { syscall?: unknown } | null)?.syscall;
  const code = startExitCode(errno, typeof step === "string" ? step : undefined);
  if (step === "cgroup") return { code, reason: `${command}: cannot join its cgroup: ${errno}` };
  if (step === "chdir") return { code, reason: `${command}: cannot enter the working directory: ${errno}` };
  if (errno === "ENOENT" && code === 127) return { code, reason: `${command}: command not found` };
  if (errno === "EACCES") return { code, reason: `${command}: permission denied` };
  if (errno === "EPERM") return { code, reason: `${command}: cannot switch user: operation not permitted` };
  return { code, reason: `${command}: ${describeError(error)}` };
}
