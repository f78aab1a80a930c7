// What the Exec service needs from a started command, whether it runs on pipes or on a
// terminal.
import type { Readable } from "node:stream";
import type { CommandCgroup } from "./process-cgroup.js";

/** How a process ended, as waitpid() told it. */
export interface ProcessExit {
  /** Exit status when it exited by itself, else null. */
  readonly code: number | null;
  /** Number of the signal that killed it, else null. */
  readonly signal: number | null;
}

/** One output stream of a command. */
export interface OutputSource {
  readonly kind: "stdout" | "stderr";
  readonly stream: Readable;
}

/**
 * Every process a command started, as far as the agent can reach them: its cgroup, or
 * where there is none, its session (which `setsid` leaves).
 */
export interface ProcessTree {
  /** Sends `signal` to every process of the tree. */
  signal(signal: NodeJS.Signals): void;
  /** Whether any process of it still runs (zombies do not count). */
  running(): boolean;
  /** SIGKILLs every process of it; resolves once they are gone (or a bounded wait ran out). */
  kill(): Promise<void>;
  /** Call once the command was reaped and no kill is under way: what it left running may go on. */
  release(): void;
}

/** A running command, in its own session and process group (pgid = sid = pid). */
export interface ProcessHandle {
  readonly pid: number;
  /** What the command started, for ending it all. */
  readonly tree: ProcessTree;
  /** stdout and stderr on pipes; the terminal alone (as stdout) in TTY mode. */
  readonly outputs: readonly OutputSource[];
  /**
   * Hands bytes to the command's stdin; resolves once the kernel took them, which is
   * the backpressure the caller waits on. Bytes for a stdin the command closed are dropped.
   */
  writeStdin(data: Uint8Array): Promise<void>;
  /** Makes the command see end of input (pipe closed, or the terminal's EOF character). */
  closeStdin(): Promise<void>;
  /** Sets the terminal size (TTY mode; ignored on pipes). */
  resize(rows: number, cols: number): void;
  /** Resolves once the process has exited and been reaped. Never rejects. */
  readonly exited: Promise<ProcessExit>;
  /** Stops reading output and releases the pipes or terminal. Call once output is done. */
  close(): void;
}

/** What to start; `file` is the executable as preflight resolved it. */
export interface LaunchOptions {
  readonly file: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  /** The user and group to switch to, the group as its only one; the agent's own when absent. */
  readonly runAs?: { readonly uid: number; readonly gid: number };
  /** A terminal of that size (TTY mode); three pipes when absent. */
  readonly terminal?: { readonly rows: number; readonly cols: number };
  /** The cgroup the command must be in before it runs; none where cgroups are not used. */
  readonly cgroup?: CommandCgroup;
}

/** A command that could not be started: 127 not found, 126 anything else. */
export interface StartFailure {
  readonly code: 126 | 127;
  /** One line, e.g. "frobnicate: command not found". */
  readonly reason: string;
}

/** The outcome of starting a command. */
export type LaunchResult = { ok: true; process: ProcessHandle } | ({ ok: false } & StartFailure);
