// Running the built guestctl as a real process, for the CLI tests: piped, or on a real
// pseudo-terminal (node-pty, from the agent's dependencies). Every process started
// here is tracked, and stopAll() (afterEach) kills whatever a failed test left running.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** The built CLI entry. */
export const GUESTCTL = fileURLToPath(new URL("../dist/cli/start.js", import.meta.url));
/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** buf, for `buf curl`. */
export const BUF = fileURLToPath(new URL("../../../node_modules/.bin/buf", import.meta.url));

/** How a guestctl run ended. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Options of a run. */
export interface RunOptions {
  /** Added to the environment (which never carries GUESTCTL_TARGET from outside). */
  env?: Record<string, string>;
  /** Written to stdin, then EOF; without it stdin stays an open pipe nobody writes. */
  input?: string | Buffer;
  cwd?: string;
  /** Run as this uid (and the same gid), as another local user would. */
  uid?: number;
}

/** A guestctl process that is running. */
export interface RunningCli {
  readonly child: ChildProcess;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once `text` has appeared on stdout (or stderr with `stream`). */
  waitForOutput(text: string, stream?: "stdout" | "stderr"): Promise<void>;
  readonly result: Promise<CliResult>;
}

const running = new Set<{ kill(): void }>();

/** The environment of a child: ours, minus anything guestctl would pick up unasked. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  if (!("GUESTCTL_TARGET" in extra)) delete env.GUESTCTL_TARGET;
  if (!("GUESTCTL_TOKEN_FILE" in extra)) delete env.GUESTCTL_TOKEN_FILE;
  return env;
}

/** Starts guestctl with pipes for stdio. */
export function startCli(args: readonly string[], options: RunOptions = {}): RunningCli {
  const child = spawn(process.execPath, [GUESTCTL, ...args], {
    env: childEnv(options.env),
    stdio: ["pipe", "pipe", "pipe"],
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
  });
  const entry = { kill: () => child.kill("SIGKILL") };
  running.add(entry);
  let stdout = "";
  let stderr = "";
  const waiters: (() => void)[] = [];
  const check = () => {
    for (const waiter of [...waiters]) waiter();
  };
  child.stdout?.setEncoding("utf8");
  child.stderr?.setEncoding("utf8");
  child.stdout?.on("data", (text: string) => {
    stdout += text;
    check();
  });
  child.stderr?.on("data", (text: string) => {
    stderr += text;
    check();
  });
  child.stdin?.on("error", () => {});
  if (options.input !== undefined) child.stdin?.end(options.input);
  const result = new Promise<CliResult>((resolve) => {
    child.once("close", (code, signal) => {
      running.delete(entry);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    waitForOutput(text, stream = "stdout") {
      return new Promise((resolve, reject) => {
        const waiter = () => {
          if ((stream === "stdout" ? stdout : stderr).includes(text)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            resolve();
          }
        };
        waiters.push(waiter);
        waiter();
        void result.then(() => {
          if (waiters.includes(waiter)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            reject(new Error(`guestctl exited before printing ${JSON.stringify(text)}; stderr: ${stderr}`));
          }
        });
      });
    },
    result,
  };
}

/** Runs guestctl to its end. */
export function runCli(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  return startCli(args, options).result;
}

/** node-pty's API, as much of it as the tests use. */
export interface Pty {
  readonly pid: number;
  onData(listener: (data: string) => void): void;
  onExit(listener: (event: { exitCode: number; signal?: number }) => void): void;
  write(data: string): void;
  resize(cols: number, rows: number): void;
  kill(signal?: string): void;
}

interface NodePty {
  spawn(
    file: string,
    args: string[],
    options: { cols: number; rows: number; env: NodeJS.ProcessEnv; cwd?: string; name?: string },
  ): Pty;
}

// node-pty is a dependency of the agent (built for this Node by the workspace install).
const nodePty = createRequire(new URL("../../guest/package.json", import.meta.url))("node-pty") as NodePty;

/** A shell command line on a real pseudo-terminal, its output collected. */
export interface PtySession {
  readonly pty: Pty;
  /** Everything the terminal showed so far. */
  output(): string;
  /** Resolves once the output matches (text, or a pattern), from `from` on. */
  waitFor(match: string | RegExp, from?: number): Promise<void>;
  /** Resolves with the exit code of the shell. */
  readonly exited: Promise<number>;
}

/** Runs `script` with /bin/sh -c on a new pseudo-terminal of the given size. */
export function startPty(
  script: string,
  size: { rows: number; cols: number },
  env: Record<string, string> = {},
): PtySession {
  const pty = nodePty.spawn("/bin/sh", ["-c", script], {
    cols: size.cols,
    rows: size.rows,
    env: childEnv({ TERM: "xterm", ...env }),
    name: "xterm",
  });
  let output = "";
  const waiters: (() => void)[] = [];
  pty.onData((data) => {
    output += data;
    for (const waiter of [...waiters]) waiter();
  });
  const exited = new Promise<number>((resolve) => pty.onExit(({ exitCode }) => resolve(exitCode)));
  const entry = {
    kill: () => {
      try {
        pty.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    },
  };
  running.add(entry);
  void exited.then(() => running.delete(entry));
  return {
    pty,
    output: () => output,
    waitFor(match, from = 0) {
      const matches = () => {
        const text = output.slice(from);
        return typeof match === "string" ? text.includes(match) : match.test(text);
      };
      return new Promise((resolve, reject) => {
        const waiter = () => {
          if (matches()) {
            waiters.splice(waiters.indexOf(waiter), 1);
            resolve();
          }
        };
        waiters.push(waiter);
        waiter();
        void exited.then(() => {
          // Output can trail the exit event by a read; look once more.
          setTimeout(() => {
            if (!waiters.includes(waiter)) return;
            waiters.splice(waiters.indexOf(waiter), 1);
            if (matches()) resolve();
            else
              reject(
                new Error(`the terminal's shell exited before showing ${String(match)}: ${JSON.stringify(output)}`),
              );
          }, 100);
        });
      });
    },
    exited,
  };
}

/** Kills every process a test started and left running (afterEach). */
export function stopAll(): void {
  for (const entry of [...running]) entry.kill();
  running.clear();
}

/** The pids of a process's direct children (Linux /proc). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter((text) => text !== "")
      .map(Number);
  } catch {
    return [];
  }
}

/** A shell-quoted word. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The command line that runs guestctl, for a shell script. */
export function guestctlCommand(args: readonly string[]): string {
  return [process.execPath, GUESTCTL, ...args].map(shellQuote).join(" ");
}
