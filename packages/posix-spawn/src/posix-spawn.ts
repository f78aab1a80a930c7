// A child process started by posix_spawn (no fork: see native/posix_spawn.c), with its
// stdin, stdout and stderr on pipes wrapped as ordinary net.Sockets, or on a terminal.
import { Socket } from "node:net";
import { getSystemErrorName } from "node:util";
import { loadNative, type PosixSpawnNative } from "./native-binding.js";

/** What to start. */
export interface PosixSpawnOptions {
  /** The executable's path: PATH is not searched. */
  readonly file: string;
  /** argv[0] included. */
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** The working directory; the caller's own when absent. */
  readonly cwd?: string;
  /** The user and group to run as (the only group, too); the caller's when absent. Needs root. */
  readonly runAs?: { readonly uid: number; readonly gid: number };
  /**
   * A cgroup v2 directory the child joins before anything else, so that every process
   * the command starts is inside it from the first.
   */
  readonly cgroup?: string;
}

/** How a child ended: its exit status, or the number of the signal that ended it. */
export interface SpawnedExit {
  readonly code: number | null;
  readonly signal: number | null;
}

/** A started child: a session and process group of its own (pgid = sid = pid). */
export interface StartedProcess {
  readonly pid: number;
  /** Resolves once it has exited and been reaped. */
  readonly exited: Promise<SpawnedExit>;
}

/** A child on three pipes. */
export interface SpawnedProcess extends StartedProcess {
  readonly stdin: Socket;
  readonly stdout: Socket;
  readonly stderr: Socket;
}

/** Why posixSpawn cannot be used on this system, or undefined when it can. */
export function posixSpawnUnavailable(): string | undefined {
  const loaded = loadNative();
  return "reason" in loaded ? loaded.reason : undefined;
}

/**
 * Starts a process in a new session, with default signal dispositions, an empty signal
 * mask, and no descriptor of ours beyond its three pipes; a file without "#!" that
 * execve refuses runs with /bin/sh, as execvp does. Throws an Error with `code` (ENOENT,
 * EACCES...) and `syscall` (the step that failed: "execve", "chdir", "cgroup",
 * "setuid"...) when it cannot start; nothing is left open then.
 */
export function posixSpawn(options: PosixSpawnOptions): SpawnedProcess {
  const native = nativeOrThrow();
  const pipes: [number, number][] = [];
  const closeAll = (fds: number[]) => {
    for (const fd of fds) native.closeFd(fd);
  };
  for (let i = 0; i < 3; i++) {
    const pipe = native.pipe();
    if (typeof pipe === "number") {
      closeAll(pipes.flat());
      throw errnoError(pipe, "pipe", "pipe");
    }
    pipes.push(pipe);
  }
  const [stdinPipe, stdoutPipe, stderrPipe] = pipes as [[number, number], [number, number], [number, number]];
  const childEnds = [stdinPipe[0], stdoutPipe[1], stderrPipe[1]] as const;
  try {
    const { pid, exited } = start(native, options, childEnds, false);
    return {
      pid,
      stdin: new Socket({ fd: stdinPipe[1], readable: false, writable: true }),
      stdout: new Socket({ fd: stdoutPipe[0], readable: true, writable: false }),
      stderr: new Socket({ fd: stderrPipe[0], readable: true, writable: false }),
      exited,
    };
  } catch (error) {
    closeAll([stdinPipe[1], stdoutPipe[0], stderrPipe[0]]);
    throw error;
  } finally {
    // The child has its copies (or there is no child).
    closeAll([...childEnds]);
  }
}

/**
 * Starts a process as posixSpawn does, but on a terminal: `slave` (a terminal's slave
 * side, left open for the caller) becomes its stdin, stdout and stderr and its
 * controlling terminal, set to node-pty's modes (canonical, echo, UTF-8, CR LF output).
 */
export function posixSpawnOnTerminal(options: PosixSpawnOptions, slave: number): StartedProcess {
  return start(nativeOrThrow(), options, [slave, slave, slave], true);
}

function nativeOrThrow(): PosixSpawnNative {
  const loaded = loadNative();
  if ("reason" in loaded) throw new Error(`posix_spawn is unavailable: ${loaded.reason}`);
  return loaded.native;
}

function start(
  native: PosixSpawnNative,
  options: PosixSpawnOptions,
  fds: readonly [number, number, number],
  terminal: boolean,
): StartedProcess {
  let resolveExit!: (exit: SpawnedExit) => void;
  const exited = new Promise<SpawnedExit>((resolve) => {
    resolveExit = resolve;
  });
  const envp = Object.entries(options.env).map(([name, value]) => `${name}=${value}`);
  const pid = native.spawn(
    options.file,
    options.argv,
    envp,
    options.cwd ?? "",
    ...fds,
    options.runAs?.uid ?? -1,
    options.runAs?.gid ?? -1,
    options.cgroup ?? "",
    terminal,
    (code: number, signal: number) => resolveExit({ code: code < 0 ? null : code, signal: signal > 0 ? signal : null }),
  );
  if (typeof pid !== "number") throw errnoError(pid.errno, pid.step, `spawn ${options.file}: ${pid.step}`);
  return { pid, exited };
}

function errnoError(
  negativeErrno: number,
  syscall: string,
  what: string,
): Error & { code: string; errno: number; syscall: string } {
  const code = getSystemErrorName(negativeErrno);
  return Object.assign(new Error(`${what}: ${code}`), { code, errno: negativeErrno, syscall });
}
