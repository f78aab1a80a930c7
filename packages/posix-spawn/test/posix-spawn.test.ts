// posixSpawn against real processes: what the command starts with (argv, env, cwd,
// session, signals, descriptors, user, cgroup), how its end is reported, and that
// failures leave nothing open.
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { posixSpawn, posixSpawnOnTerminal, posixSpawnUnavailable, type SpawnedProcess } from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "posix-spawn-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const env = { PATH: "/usr/bin:/bin" };

async function collect(child: SpawnedProcess, input?: string) {
  const read = (stream: NodeJS.ReadableStream) =>
    new Promise<string>((resolve) => {
      let text = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        text += chunk;
      });
      stream.on("end", () => resolve(text));
    });
  const [stdout, stderr] = [read(child.stdout), read(child.stderr)];
  child.stdin.on("error", () => {});
  if (input === undefined) child.stdin.end();
  else child.stdin.end(input);
  return { stdout: await stdout, stderr: await stderr, ...(await child.exited) };
}

function sh(script: string, options: { cwd?: string; env?: Record<string, string> } = {}) {
  return posixSpawn({ file: "/bin/sh", argv: ["sh", "-c", script], env: options.env ?? env, ...options });
}

const openFds = () => readdirSync("/proc/self/fd").length;

// A cgroup v2 directory under this process's own: `path` as /proc/PID/cgroup names it.
function makeCgroup(): { dir: string; path: string; remove(): void } {
  const own = readFileSync("/proc/self/cgroup", "utf8")
    .split("\n")
    .find((line) => line.startsWith("0::"))
    ?.slice(3);
  const mount = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" "))
    .find((fields) => fields[fields.indexOf("-") + 1] === "cgroup2")?.[4];
  if (own === undefined || mount === undefined) throw new Error("this test needs a cgroup v2 hierarchy");
  const path = join(own, `posix-spawn-test-${process.pid}`);
  const dir = join(mount, path);
  mkdirSync(dir);
  return { dir, path, remove: () => rmdirSync(dir) };
}

describe("posixSpawn", () => {
  it("is available on this machine", () => {
    expect(posixSpawnUnavailable()).toBeUndefined();
  });

  it("runs the file with argv, env and cwd, with stdin, stdout and stderr on pipes", async () => {
    const child = sh('printf "%s|%s|%s|" "$0" "$GREETING" "$(pwd)"; cat; echo oops >&2; exit 3', {
      cwd: dir,
      env: { ...env, GREETING: "hello world" },
    });
    expect(child.pid).toBeGreaterThan(1);
    const result = await collect(child, "from stdin");
    expect(result).toEqual({ stdout: `sh|hello world|${dir}|from stdin`, stderr: "oops\n", code: 3, signal: null });
  });

  it("reports death by signal with the signal's number", async () => {
    const result = await collect(sh("kill -TERM $$"));
    expect(result.code).toBeNull();
    expect(result.signal).toBe(15);
  });

  it("starts the command in a session of its own", async () => {
    const child = sh("ps -o pid=,pgid=,sid= -p $$");
    const { stdout } = await collect(child);
    expect(stdout.trim().split(/\s+/).map(Number)).toEqual([child.pid, child.pid, child.pid]);
  });

  it("gives the command default signal dispositions and an empty mask, though Node ignores SIGPIPE", async () => {
    const { stdout } = await collect(sh("grep -E '^Sig(Ign|Blk)' /proc/self/status"));
    expect(stdout).toBe("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
  });

  it("passes no descriptor beyond 0, 1 and 2, even ones opened without close-on-exec", async () => {
    // Node opens files with O_CLOEXEC; a descriptor without it (like node-pty's terminal
    // masters) is what closefrom(3) is for. /proc/self/fd of ls itself shows 0-3 (3 is
    // the directory ls reads).
    const { stdout } = await collect(posixSpawn({ file: "/bin/ls", argv: ["ls", "/proc/self/fd"], env }));
    expect(stdout.split("\n").filter(Boolean).sort()).toEqual(["0", "1", "2", "3"]);
  });

  it("throws the errno of a file that cannot be executed, and leaves no descriptor open", async () => {
    const before = openFds();
    expect(() => posixSpawn({ file: join(dir, "missing"), argv: ["missing"], env })).toThrow(
      expect.objectContaining({ code: "ENOENT" }),
    );
    const notExecutable = join(dir, "data.txt");
    writeFileSync(notExecutable, "just data\n", { mode: 0o644 });
    expect(() => posixSpawn({ file: notExecutable, argv: ["data"], env })).toThrow(
      expect.objectContaining({ code: "EACCES" }),
    );
    expect(() => posixSpawn({ file: "/bin/true", argv: ["true"], env, cwd: join(dir, "nowhere") })).toThrow(
      expect.objectContaining({ code: "ENOENT", syscall: "chdir" }),
    );
    expect(openFds()).toBe(before);
  });

  it("runs a file without #! with /bin/sh, as execvp does", async () => {
    // execve says ENOEXEC; execvp hands the file to /bin/sh, with its own argv after it.
    const script = join(dir, "no-shebang");
    writeFileSync(script, 'echo "$0 $1"\n', { mode: 0o755 });
    const { stdout, code } = await collect(posixSpawn({ file: script, argv: ["no-shebang", "arg"], env }));
    expect({ stdout, code }).toEqual({ stdout: `${script} arg\n`, code: 0 });
  });

  it("runs as the user and group it is given, with that group as the only one", async () => {
    const { stdout } = await collect(
      posixSpawn({
        file: "/bin/sh",
        argv: ["sh", "-c", "id -u; id -g; id -G"],
        env,
        cwd: "/",
        runAs: { uid: 65534, gid: 65534 },
      }),
    );
    expect(stdout).toBe("65534\n65534\n65534\n");
  });

  it("reports every exit of many children started at once, and frees their descriptors", async () => {
    const before = openFds();
    const children = Array.from({ length: 100 }, (_, i) => sh(`exit ${i % 7}`));
    const results = await Promise.all(children.map((child) => collect(child)));
    expect(results.map((result) => result.code)).toEqual(children.map((_, i) => i % 7));
    for (const child of children) {
      child.stdout.destroy();
      child.stderr.destroy();
      child.stdin.destroy();
    }
    await new Promise((resolve) => setImmediate(resolve));
    expect(openFds()).toBe(before);
  });

  it("puts the child in the cgroup it is given before the command runs", async () => {
    const cgroup = makeCgroup();
    try {
      // The shell's own first line of output already sees itself inside.
      const { stdout } = await collect(
        posixSpawn({
          file: "/bin/sh",
          argv: ["sh", "-c", "grep ^0:: /proc/$$/cgroup; cat cgroup.procs"],
          env,
          cwd: cgroup.dir,
          cgroup: cgroup.dir,
        }),
      );
      const [line, ...procs] = stdout.trim().split("\n");
      expect(line).toBe(`0::${cgroup.path}`);
      // sh and cat, and nothing of the test's.
      expect(procs).toHaveLength(2);
    } finally {
      cgroup.remove();
    }
  });

  it("fails at the cgroup step for a cgroup that is not there, and leaves nothing open", () => {
    const before = openFds();
    expect(() => posixSpawn({ file: "/bin/true", argv: ["true"], env, cgroup: join(dir, "no-such-cgroup") })).toThrow(
      expect.objectContaining({ code: "ENOENT", syscall: "cgroup" }),
    );
    expect(openFds()).toBe(before);
  });

  it("reaps the child: no zombie is left once its exit was reported", async () => {
    const child = sh("exit 0");
    await collect(child);
    const { stdout } = await collect(
      posixSpawn({ file: "/bin/ps", argv: ["ps", "-o", "stat=", "-p", String(child.pid)], env }),
    );
    expect(stdout.trim()).toBe("");
  });

  it("refuses to run on a terminal that is not one, and leaves nothing open", () => {
    // On a real terminal it is the agent's TTY mode (packages/guest/test/exec-tty.test.ts).
    const notTerminal = openSync("/dev/null", "r+");
    const before = openFds();
    expect(() => posixSpawnOnTerminal({ file: "/bin/true", argv: ["true"], env }, notTerminal)).toThrow(
      expect.objectContaining({ code: "ENOTTY", syscall: "tcsetattr" }),
    );
    expect(openFds()).toBe(before);
    closeSync(notTerminal);
  });
});
