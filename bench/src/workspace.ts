// Where the benchmark keeps its files: one temp dir on tmpfs (so disks do not decide
// the figures), removed at the end whatever happens.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The benchmark's scratch space. */
export interface Workspace {
  readonly root: string;
  /** Plays the host's disk. */
  readonly host: string;
  /** Plays the guest's disk (the agent runs on this machine). */
  readonly guest: string;
  /** For sockets, keys and configs. */
  readonly misc: string;
  /** Removes everything. */
  remove(): Promise<void>;
}

/** Creates the workspace, on /dev/shm when there is one. */
export async function createWorkspace(): Promise<Workspace> {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const root = await mkdtemp(join(base, "guestkit-bench-"));
  const workspace: Workspace = {
    root,
    host: join(root, "host"),
    guest: join(root, "guest"),
    misc: join(root, "misc"),
    remove: () => rm(root, { recursive: true, force: true }),
  };
  await Promise.all([mkdir(workspace.host), mkdir(workspace.guest), mkdir(workspace.misc, { mode: 0o700 })]);
  return workspace;
}

/**
 * Writes a file of `bytes` bytes of incompressible data (one random MiB repeated), so no
 * layer can win by compressing.
 */
export async function writeDataFile(path: string, bytes: number): Promise<void> {
  const block = randomBytes(1024 * 1024);
  const file = await open(path, "w");
  try {
    for (let written = 0; written < bytes; written += block.length) {
      await file.write(block, 0, Math.min(block.length, bytes - written));
    }
  } finally {
    await file.close();
  }
}

/** Writes `count` files of `size` bytes under `root`, 100 to a directory. */
export async function writeTree(root: string, count: number, size: number): Promise<void> {
  const data = randomBytes(size);
  for (let i = 0; i < count; i += 100) {
    const dir = join(root, `d${String(i / 100).padStart(3, "0")}`);
    await mkdir(dir, { recursive: true });
    const writes: Promise<void>[] = [];
    for (let j = i; j < Math.min(count, i + 100); j++) {
      writes.push(
        open(join(dir, `f${String(j).padStart(5, "0")}`), "w").then(async (file) => {
          await file.write(data);
          await file.close();
        }),
      );
    }
    await Promise.all(writes);
  }
}

/** Runs a command to its end; rejects with its stderr when it fails. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { stdin?: string; stdout?: "ignore" | number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: [options.stdin === undefined ? "ignore" : "pipe", options.stdout ?? "pipe", "pipe"],
      ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
    });
    let out = "";
    let err = "";
    child.stdout?.setEncoding("utf8").on("data", (text: string) => {
      out += text;
    });
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      err += text;
    });
    if (options.stdin !== undefined) child.stdin?.end(options.stdin);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${command} ${args.join(" ")}: ${signal ?? `exit ${code}`}: ${err.trim()}`));
    });
  });
}
