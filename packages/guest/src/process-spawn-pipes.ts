// Starting a command on pipes (non-TTY Exec): stdout and stderr apart, stdin a pipe.
//
// Two ways, one result. posix_spawn (@guestkit/posix-spawn) does not copy the agent's
// memory map as fork does, which made it the larger part of an exec's time in the agent
// (bench/README.md); it serves every command, and puts it in its cgroup and switches
// user between its clone and the exec. Node's spawn serves a system without the addon
// or without pidfds; the command's cgroup is then joined by the trampoline
// (exec-trampoline.ts), as Node cannot act between its fork and the exec.
import { type ChildProcess, type StdioOptions, spawn } from "node:child_process";
import { closeSync, constants, openSync } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { errnoOf } from "@guestkit/protocol";
import { trampolineInvocation } from "./exec-trampoline-env.js";
import { describeError } from "./grpc-errors.js";
import { importOptional } from "./optional-package.js";
import { commandTree } from "./process-group.js";
import type { LaunchOptions, LaunchResult, ProcessExit, ProcessHandle, ProcessTree } from "./process-handle.js";
import { inheritableFds } from "./process-inherited-fds.js";
import { signalNumberOf } from "./signal-names.js";

const addon = await importOptional("@guestkit/posix-spawn", () => import("@guestkit/posix-spawn"));
const posixSpawn = "module" in addon ? addon.module.posixSpawn : undefined;

/** Why commands are started with Node's spawn (fork) rather than posix_spawn; undefined when they are not. */
export const posixSpawnFallbackReason: string | undefined =
  "module" in addon ? addon.module.posixSpawnUnavailable() : addon.reason;

/**
 * Spawns the command detached (setsid: its own session and process group) with three
 * pipes. Resolves once it runs, or with the reason it could not start.
 */
export async function spawnWithPipes(options: LaunchOptions): Promise<LaunchResult> {
  if (posixSpawn === undefined || posixSpawnFallbackReason !== undefined) return spawnWithFork(options);
  const [command = ""] = options.argv;
  try {
    const child = posixSpawn({
      file: options.file,
      argv: options.argv,
      env: options.env,
      cwd: options.cwd,
      ...(options.runAs ? { runAs: options.runAs } : {}),
      ...(options.cgroup ? { cgroup: options.cgroup.path } : {}),
    });
    return { ok: true, process: pipeHandle(child.pid, child, child.exited, commandTree(child.pid, options.cgroup)) };
  } catch (error) {
    return { ok: false, ...startFailureOf(command, error) };
  }
}

/** Node's spawn: what serves when the addon cannot. Exported for its test. */
export async function spawnWithFork(options: LaunchOptions): Promise<LaunchResult> {
  const [command = "", ...args] = options.argv;
  let child: ChildProcess;
  const leaks = inheritableFds();
  const devNull = leaks.length > 0 ? openSync("/dev/null", constants.O_RDWR) : -1;
  try {
    const common = { cwd: options.cwd, detached: true, stdio: stdioCovering(leaks, devNull) };
    if (options.cgroup) {
      // Through the trampoline, which joins the cgroup and switches user before the exec.
      const invocation = trampolineInvocation({ ...options, cgroup: options.cgroup.path });
      child = spawn(process.execPath, invocation.args, { ...common, env: invocation.env });
    } else {
      child = spawn(command, args, {
        ...common,
        argv0: command,
        env: options.env,
        ...(options.runAs ? { uid: options.runAs.uid, gid: options.runAs.gid } : {}),
      });
    }
  } catch (error) {
    return { ok: false, code: 126, reason: `${command}: ${describeError(error)}` };
  } finally {
    // The child has its own copies by now.
    if (devNull >= 0) closeSync(devNull);
  }
  // The exit listener goes on first, so no exit is missed whatever happens next.
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal: signal ? signalNumberOf(signal) : null }));
  });
  if (child.pid === undefined) {
    // libuv reports exec failures through its own pipe, as an 'error' on the next tick.
    const error = await new Promise<unknown>((resolve) => child.once("error", resolve));
    return { ok: false, ...startFailureOf(command, error) };
  }
  child.on("error", () => {
    // Only spawn failures come here, and that case was handled above.
  });
  const stdio = child as ChildProcess & {
    stdin: NonNullable<ChildProcess["stdin"]>;
    stdout: NonNullable<ChildProcess["stdout"]>;
    stderr: NonNullable<ChildProcess["stderr"]>;
  };
  return { ok: true, process: pipeHandle(child.pid, stdio, exited, commandTree(child.pid, options.cgroup)) };
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

// Node offers no close-on-exec control, so each descriptor the child would inherit (a
// terminal master of another command, see process-inherited-fds.ts) is covered with
// /dev/null at the same number in the child.
function stdioCovering(leaks: readonly number[], devNull: number): StdioOptions {
  const stdio: Array<"pipe" | "ignore" | number> = ["pipe", "pipe", "pipe"];
  for (const fd of leaks) {
    while (stdio.length < fd) stdio.push("ignore");
    stdio[fd] = devNull;
  }
  return stdio;
}

function startFailureOf(command: string, error: unknown): { code: 126 | 127; reason: string } {
  const code = errnoOf(error);
  // The step of posix_spawn's child that failed, when it was not the exec itself.
  const step = (error as { syscall?: unknown } | null)?.syscall;
  if (step === "cgroup") return { code: 126, reason: `${command}: cannot join its cgroup: ${code}` };
  if (step === "chdir") return { code: 126, reason: `${command}: cannot enter the working directory: ${code}` };
  if (code === "ENOENT") return { code: 127, reason: `${command}: command not found` };
  if (code === "EACCES") return { code: 126, reason: `${command}: permission denied` };
  if (code === "EPERM") return { code: 126, reason: `${command}: cannot switch user: operation not permitted` };
  return { code: 126, reason: `${command}: ${describeError(error)}` };
}
