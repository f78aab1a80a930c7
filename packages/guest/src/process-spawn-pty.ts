// Starting a command on a terminal (TTY Exec) with node-pty's forkpty: the child is a
// session leader with the terminal as its controlling tty, so resize delivers SIGWINCH,
// ^C delivers SIGINT and /dev/tty works.
import { closeSync, constants, openSync } from "node:fs";
import { ReadStream } from "node:tty";
import { trampolineInvocation } from "./exec-trampoline-env.js";
import { describeError } from "./grpc-errors.js";
import { commandTree, sessionOf } from "./process-group.js";
import type { LaunchOptions, LaunchResult, ProcessExit, ProcessHandle } from "./process-handle.js";
import { inheritableFds, registerTerminalMaster } from "./process-inherited-fds.js";
import { ptyNative } from "./process-pty-native.js";

// The terminal's VEOF character as node-pty sets up the terminal (^D).
const EOF_CHAR = 0x04;

// How long to wait for the forked child to become a session leader (see below).
const SESSION_WAIT_MS = 2000;

/** Forks the command on a new terminal of options.rows x options.cols. */
export async function spawnWithPty(options: LaunchOptions): Promise<LaunchResult> {
  const [command = "", ...args] = options.argv;
  let native: ReturnType<typeof ptyNative>;
  try {
    native = ptyNative();
  } catch (error) {
    return { ok: false, code: 126, reason: describeError(error) };
  }
  let resolveExit!: (exit: ProcessExit) => void;
  const reaped = new Promise<ProcessExit>((resolve) => {
    resolveExit = resolve;
  });
  const onExit = (code: number, signal: number) =>
    resolveExit(signal ? { code: null, signal } : { code, signal: null });

  // forkpty's child runs node-pty's code up to the exec, so whatever must happen before
  // the command runs is done by the trampoline: joining the command's cgroup, closing
  // another command's terminal master or anything else the agent holds without
  // close-on-exec, and switching user (as root, so it can always read its own script).
  const viaTrampoline = options.cgroup !== undefined || inheritableFds().length > 0;
  const runAs = options.runAs;
  let child: ReturnType<typeof native.fork>;
  try {
    if (viaTrampoline) {
      const invocation = trampolineInvocation({ ...options, cgroup: options.cgroup?.path });
      const env = Object.entries(invocation.env).map(([name, value]) => `${name}=${value}`);
      child = native.fork(
        process.execPath,
        invocation.args,
        env,
        options.cwd,
        options.cols,
        options.rows,
        -1,
        -1,
        true,
        "",
        onExit,
      );
    } else {
      const env = Object.entries(options.env).map(([name, value]) => `${name}=${value}`);
      child = withSupplementaryGroups(runAs ? [runAs.gid] : undefined, () =>
        native.fork(
          command,
          args,
          env,
          options.cwd,
          options.cols,
          options.rows,
          runAs?.uid ?? -1,
          runAs?.gid ?? -1,
          true,
          "",
          onExit,
        ),
      );
    }
  } catch (error) {
    return { ok: false, code: 126, reason: `${command}: cannot start on a terminal: ${describeError(error)}` };
  }
  // Before anything else can start a command: the next child must not get this master.
  const forgetMaster = registerTerminalMaster(child.fd);

  // The agent holds the slave side open itself until the command has been reaped. The
  // master reads EIO (end of output) as soon as the last slave descriptor closes, which
  // happens early in the exiting command's do_exit(); closing the master then hangs up
  // the terminal, and the SIGHUP that sends replaces the exit status the command was
  // about to report. Close-on-exec, as everything Node opens.
  let slave: number | undefined;
  try {
    slave = openSync(child.pty, constants.O_RDWR | constants.O_NOCTTY);
  } catch {
    // The terminal is gone already; output then ends with the command.
  }
  const exited = reaped.then((exit) => {
    if (slave !== undefined) closeSync(slave);
    return exit;
  });

  // One stream for both directions: libuv writes to the non-blocking master with its
  // own EAGAIN handling, and closes the descriptor only on the loop thread, so no write
  // can land on a reused descriptor number.
  const terminal = new ReadStream(child.fd);
  // 'close' comes once libuv has closed the descriptor, so its number is free again.
  terminal.once("close", forgetMaster);
  // EIO once every holder of the slave side has closed it: that is the terminal's EOF.
  terminal.on("error", () => {});
  let lastByte = 0x0a;
  let stdinClosed = false;
  const handle: ProcessHandle = {
    pid: child.pid,
    tree: commandTree(child.pid, options.cgroup),
    outputs: [{ kind: "stdout", stream: terminal }],
    writeStdin(data) {
      if (stdinClosed || !terminal.writable || data.length === 0) return Promise.resolve();
      lastByte = data[data.length - 1] ?? lastByte;
      return new Promise((resolve) => terminal.write(data, () => resolve()));
    },
    closeStdin() {
      if (stdinClosed || !terminal.writable) return Promise.resolve();
      stdinClosed = true;
      // ^D ends input only at the start of a line; in the middle of one it just hands
      // over the partial line, and a second ^D then ends input.
      const atLineStart = lastByte === 0x0a || lastByte === 0x0d;
      const eof = Buffer.from(atLineStart ? [EOF_CHAR] : [EOF_CHAR, EOF_CHAR]);
      return new Promise((resolve) => terminal.write(eof, () => resolve()));
    },
    resize(rows, cols) {
      if (terminal.destroyed) return;
      try {
        native.resize(child.fd, cols, rows);
      } catch {
        // The terminal is already gone.
      }
    },
    exited,
    close() {
      terminal.destroy();
    },
  };
  await untilSessionLeader(child.pid);
  return { ok: true, process: handle };
}

/**
 * forkpty() returns in the parent as soon as it has forked, before the child's setsid()
 * (in login_tty): on this 2-core machine the child was not yet a session leader in half
 * of the forks. Until it is, the command's process group does not exist, so a signal
 * sent to it (a client's kill right after `started`, or a signal pipelined behind the
 * start message) finds no group and is lost. libuv's spawn waits for the child's exec;
 * this waits for its setsid, or for it to be gone, before the command counts as started.
 */
async function untilSessionLeader(pid: number): Promise<void> {
  const deadline = Date.now() + SESSION_WAIT_MS;
  for (;;) {
    const session = sessionOf(pid);
    if (session === undefined || session === pid || Date.now() > deadline) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

// forkpty's child calls setgid and setuid but never setgroups, so it would keep the
// agent's supplementary groups (root's). Node cannot act between fork and exec, so the
// agent sets the groups it wants the child to inherit around the synchronous fork and
// restores its own right after. The agent is root, which needs no group for any access,
// so the other threads never notice the brief change.
function withSupplementaryGroups<T>(groups: number[] | undefined, run: () => T): T {
  if (!groups || typeof process.setgroups !== "function" || typeof process.getgroups !== "function") return run();
  const own = process.getgroups();
  process.setgroups(groups);
  try {
    return run();
  } finally {
    process.setgroups(own);
  }
}
