// Runs INSIDE the QEMU guest (Node strips the types): drives the agent that init
// started, over real AF_VSOCK loopback (CID 1, port 2222), through the host library.
// Prints one line per check and a verdict; exits 0 only if every check passed.
import { execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { createGuestClient, type GuestClient } from "@guestkit/host";
import { connectVsock, listenVsock, localCid, VMADDR_CID_HOST, VMADDR_CID_LOCAL } from "@guestkit/vsock";

const PREFIX = "guestkit-e2e:";
const AGENT_PORT = 2222;
// The agent init started requires this token (the test's archive added it): the checks
// run inside the guest, and without a token the agent would serve only the host (CID 2).
const TOKEN_FILE = "/etc/guestkit/token";
const TOKEN = readFileSync(TOKEN_FILE, "utf8").trim();

function agentClient(port = AGENT_PORT): GuestClient {
  return createGuestClient(`vsock:1:${port}`, { token: TOKEN });
}
const results: Array<{ name: string; ok: boolean }> = [];

function say(line: string): void {
  process.stdout.write(`${PREFIX} ${line}\n`);
}

async function check(name: string, body: () => Promise<string | undefined>): Promise<void> {
  const started = Date.now();
  try {
    const detail = await body();
    results.push({ name, ok: true });
    say(`ok ${name} (${Date.now() - started} ms)${detail ? `: ${detail}` : ""}`);
  } catch (error) {
    results.push({ name, ok: false });
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    say(`FAIL ${name}: ${text.replaceAll("\n", " | ")}`);
  }
}

function expectEqual<T>(actual: T, expected: T, what: string): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

// Tests dial CID 1 only, and only where vsock_loopback keeps it inside this guest; a
// different CID is dialed only where the guest has no virtio device at all, so that
// nothing can leave the machine.
function assertSafeToDial(cid: number): void {
  if (cid === VMADDR_CID_LOCAL) {
    if (!existsSync("/sys/module/vsock_loopback")) throw new Error("refusing to dial CID 1: no vsock_loopback");
    return;
  }
  // With loopback as the only transport the kernel reports CID 1 as ours, so this
  // comes after the CID 1 case.
  if (cid === VMADDR_CID_HOST || cid === localCid()) throw new Error(`refusing to dial CID ${cid}`);
  if (readdirSync("/sys/bus/virtio/devices").length > 0)
    throw new Error(`refusing to dial CID ${cid}: a virtio device exists`);
}

async function dial(cid: number, port: number, timeoutMs = 5000): Promise<Socket> {
  assertSafeToDial(cid);
  return connectVsock(cid, port, { timeoutMs });
}

function agentPid(): number {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv.some((arg) => arg.endsWith("/dist/agent.mjs")) && argv.includes("vsock:2222")) return Number(entry);
    } catch {
      // The process ended while we looked.
    }
  }
  throw new Error("no agent process found");
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function zombies(): string[] {
  const found: string[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // The state follows the command name, which is in parentheses and may contain spaces.
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      if (state === "Z") found.push(stat.slice(0, stat.lastIndexOf(")") + 1));
    } catch {
      // Gone.
    }
  }
  return found;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// One connection that speaks just enough HTTP/2 to make the agent start a session:
// the client preface and an empty SETTINGS frame, then wait for the server's SETTINGS.
async function http2Touch(): Promise<void> {
  const socket = await dial(VMADDR_CID_LOCAL, AGENT_PORT);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no SETTINGS from the agent")), 10_000);
    socket.once("data", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("error", reject);
    socket.write(
      Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]),
    );
  });
  socket.destroy();
}

async function main(): Promise<number> {
  const uptime = () => readFileSync("/proc/uptime", "utf8").split(" ")[0];
  say(
    `start at ${uptime()} s after boot; agent target vsock:1:${AGENT_PORT}; client: @guestkit/host createGuestClient`,
  );
  const client: GuestClient = agentClient();

  await check("agent ready over AF_VSOCK loopback", async () => {
    await client.waitUntilReady({ timeoutMs: 180_000 });
    return `at ${uptime()} s after boot`;
  });

  await check("exec: stdout, stderr and exit code", async () => {
    const result = await client.run(["sh", "-c", "echo out; echo err >&2; exit 3"]);
    expectEqual([result.stdout, result.stderr, result.exit.code], ["out\n", "err\n", 3], "run");
    return undefined;
  });

  await check("exec: stdin EOF ends cat", async () => {
    const result = await client.run(["sh", "-c", "cat; echo done"], { input: "hello\nworld\n" });
    expectEqual([result.stdout, result.exit.code], ["hello\nworld\ndone\n", 0], "cat");
    return undefined;
  });

  await check("exec: TTY size, resize, stty size", async () => {
    const handle = client.exec(["sh", "-c", "stty size; read line; stty size"], {
      tty: true,
      rows: 30,
      cols: 100,
      stdin: true,
    });
    let output = "";
    const reading = (async () => {
      for await (const chunk of handle) output += Buffer.from(chunk.data).toString();
    })();
    await waitFor("the first stty size", 20_000, () => (output.includes("30 100") ? true : undefined));
    handle.resize(50, 120);
    await sleep(200);
    handle.stdin.write("\n");
    const exit = await handle.exit;
    await reading;
    if (!output.includes("50 120")) throw new Error(`no "50 120" after resize in ${JSON.stringify(output)}`);
    expectEqual(exit.code, 0, "exit code");
    return JSON.stringify(output.replaceAll("\r", ""));
  });

  await check("exec: TTY stdin EOF", async () => {
    const handle = client.exec(["cat"], { tty: true, stdin: true });
    const reading = (async () => {
      for await (const _chunk of handle) {
        // Drain.
      }
    })();
    handle.stdin.end("abc\n");
    const exit = await handle.exit;
    await reading;
    expectEqual(exit.code, 0, "cat exit code");
    return undefined;
  });

  await check("exec: timeout gives 124", async () => {
    const started = Date.now();
    const result = await client.run(["sleep", "30"], { timeoutSeconds: 1 });
    expectEqual([result.exit.code, result.exit.timedOut], [124, true], "exit");
    if (Date.now() - started > 15_000) throw new Error("the timeout took too long to end the command");
    return undefined;
  });

  await check("exec: each command in a cgroup of its own, and a timeout ends its setsid child", async () => {
    const pid = agentPid();
    const own = readFileSync(`/proc/${pid}/cgroup`, "utf8").trim();
    const where = await client.run(["cat", "/proc/self/cgroup"]);
    const expected = `0::${own.slice(3).replace(/\/$/, "")}/guest-agent-${pid}/exec-`;
    if (!where.stdout.startsWith(expected))
      throw new Error(`the command is in ${where.stdout.trim()}, not ${expected}N`);
    const pidFile = "/tmp/e2e-setsid.pid";
    const script = `setsid sh -c 'echo $$ >${pidFile}.tmp && mv ${pidFile}.tmp ${pidFile} && exec sleep 600' & while [ ! -e ${pidFile} ]; do sleep 0.05; done; sleep 600`;
    const result = await client.run(["sh", "-c", script], { timeoutSeconds: 5 });
    expectEqual([result.exit.code, result.exit.timedOut], [124, true], "exit");
    const escapee = Number(readFileSync(pidFile, "utf8"));
    await waitFor("the setsid child to be gone", 10_000, () => {
      try {
        const stat = readFileSync(`/proc/${escapee}/stat`, "utf8");
        return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z") ? true : undefined;
      } catch {
        return true;
      }
    });
    const mount = readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .find((line) => line.startsWith("none /sys/fs/cgroup cgroup2 "));
    return `${where.stdout.trim()}; setsid child ${escapee} gone; mount: ${mount?.split(" ")[3]}`;
  });

  await check("copy: upload and download a tree, modes and times kept", async () => {
    const src = "/tmp/e2e-src";
    mkdirSync(`${src}/bin`, { recursive: true });
    writeFileSync(`${src}/notes.txt`, "some notes\n", { mode: 0o640 });
    writeFileSync(`${src}/bin/tool`, "#!/bin/sh\necho tool\n", { mode: 0o755 });
    writeFileSync(`${src}/bin/empty`, "", { mode: 0o600 });
    symlinkSync("notes.txt", `${src}/link`);
    const times: Record<string, number> = {
      "notes.txt": 1_600_000_000.25,
      "bin/tool": 1_650_000_000.5,
      "bin/empty": 1_500_000_000,
      bin: 1_610_000_000,
    };
    for (const [path, time] of Object.entries(times)) utimesSync(`${src}/${path}`, time, time);
    execFileSync("chmod", ["0750", `${src}/bin`]);
    const up = await client.copyTo(src, "/tmp/e2e-up");
    const upStat = await client.stat("/tmp/e2e-up/bin/tool");
    if (!upStat.exists) throw new Error("uploaded file missing");
    expectEqual([upStat.mode.toString(8), upStat.mtime?.getTime()], ["755", 1_650_000_000_500], "uploaded tool");
    const down = await client.copyFrom("/tmp/e2e-up", "/tmp/e2e-down");
    for (const path of ["notes.txt", "bin/tool", "bin/empty", "bin", "link"]) {
      const a = lstatSync(`${src}/${path}`);
      const b = lstatSync(`/tmp/e2e-down/${path}`);
      expectEqual((b.mode & 0o7777).toString(8), (a.mode & 0o7777).toString(8), `mode of ${path}`);
      expectEqual(b.isSymbolicLink(), a.isSymbolicLink(), `type of ${path}`);
      if (!a.isSymbolicLink()) expectEqual(b.mtimeMs, a.mtimeMs, `mtime of ${path}`);
      if (a.isFile())
        expectEqual(readFileSync(`/tmp/e2e-down/${path}`, "utf8"), readFileSync(`${src}/${path}`, "utf8"), path);
    }
    expectEqual(readlinkSync("/tmp/e2e-down/link"), "notes.txt", "link target");
    return `up ${up.entries} entries ${up.bytes} bytes, down ${down.entries} entries ${down.bytes} bytes`;
  });

  await check("stat: /tmp is a 01777 directory, a missing path does not exist", async () => {
    const tmp = await client.stat("/tmp");
    if (!tmp.exists) throw new Error("/tmp missing");
    expectEqual([tmp.type, tmp.mode.toString(8)], ["directory", "1777"], "/tmp");
    const missing = await client.stat("/no/such/path");
    expectEqual(missing.exists, false, "missing path");
    return undefined;
  });

  await check("detached: outlives its client, keeps its output, kill ends it", async () => {
    const starter = agentClient();
    const { id, pid } = await starter.startDetached(["sh", "-c", "echo detached-hello; exec sleep 600"], {
      name: "e2e-job",
    });
    await starter.close();
    let kept = "";
    for (let i = 0; i < 100 && !kept.includes("detached-hello"); i++) {
      kept = "";
      for await (const { data } of client.attach(id, { follow: false })) kept += Buffer.from(data).toString();
      if (!kept.includes("detached-hello")) await sleep(50);
    }
    expectEqual(kept, "detached-hello\n", "kept output");
    const listed = (await client.listDetached()).find((command) => command.id === id);
    expectEqual([listed?.running, listed?.pid], [true, pid], "listed");
    await client.killDetached(id);
    const after = (await client.listDetached()).find((command) => command.id === id);
    expectEqual([after?.running, after?.exit?.code], [false, 143], "after kill");
    return `pid ${pid}`;
  });

  await check("port forward: a TCP server inside the guest, through ForwardPort", async () => {
    const { createServer } = await import("node:net");
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      let got = "";
      socket.on("data", (data: Buffer) => {
        got += data.toString();
      });
      socket.on("end", () => socket.end(`echo:${got}`));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const forwarded = await client.forwardPort(port);
      let answer = "";
      forwarded.on("data", (data: Buffer) => {
        answer += data.toString();
      });
      const ended = new Promise((resolve) => forwarded.once("end", resolve));
      forwarded.end("through the agent");
      await ended;
      expectEqual(answer, "echo:through the agent", "answer");
      return undefined;
    } finally {
      server.close();
    }
  });

  await check("data connections over vsock: 16 MiB of output, a 16 MiB file each way, a forward of 4 MiB", async () => {
    const { createHash, randomBytes } = await import("node:crypto");
    const { createServer } = await import("node:net");
    const size = 16 * 1024 * 1024;
    const output = client.exec(["head", "-c", String(size), "/dev/zero"]);
    let received = 0;
    for await (const { data } of output) received += data.byteLength;
    expectEqual([received, (await output.exit).code], [size, 0], "output");
    const file = randomBytes(size);
    writeFileSync("/tmp/e2e-big", file);
    await client.copyTo("/tmp/e2e-big", "/tmp/e2e-big-up");
    await client.copyFrom("/tmp/e2e-big-up", "/tmp/e2e-big-down");
    expectEqual(readFileSync("/tmp/e2e-big-down").equals(file), true, "file round trip");
    // A server that answers with the hash of what it got, once its client half-closed.
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      const hash = createHash("sha256");
      socket.on("data", (data: Buffer) => hash.update(data));
      socket.on("end", () => socket.end(hash.digest("hex")));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const forwarded = await client.forwardPort((server.address() as { port: number }).port);
      const sent = randomBytes(4 * 1024 * 1024);
      let answer = "";
      forwarded.on("data", (data: Buffer) => {
        answer += data.toString();
      });
      const ended = new Promise((resolve) => forwarded.once("end", resolve));
      forwarded.end(sent);
      await ended;
      expectEqual(answer, createHash("sha256").update(sent).digest("hex"), "forwarded bytes");
    } finally {
      server.close();
    }
    return undefined;
  });

  await check("orphans are reaped: no zombie after background children exit", async () => {
    const result = await client.run([
      "sh",
      "-c",
      "for i in 1 2 3 4 5; do sleep 0.3 >/dev/null 2>&1 & done; (sleep 0.6 >/dev/null 2>&1 &); echo started",
    ]);
    expectEqual([result.stdout, result.exit.code], ["started\n", 0], "spawn orphans");
    await sleep(1500);
    const left = await waitFor("zombies to be reaped", 5000, () => {
      const found = zombies();
      return found.length === 0 ? found : undefined;
    }).catch(() => zombies());
    if (left.length > 0) throw new Error(`zombies: ${left.join(", ")}`);
    return undefined;
  });

  await check("vsock: connecting to a port nobody listens on fails at once", async () => {
    const started = Date.now();
    const error = await dial(VMADDR_CID_LOCAL, 2223).then(
      (socket) => {
        socket.destroy();
        throw new Error("connected to a port nobody listens on");
      },
      (failure: unknown) => failure as { code?: string; message: string },
    );
    if (error.code !== "ECONNRESET") throw new Error(`expected ECONNRESET, got ${error.code}: ${error.message}`);
    return `${error.message} in ${Date.now() - started} ms`;
  });

  await check("vsock: a CID with no transport behind it fails at once", async () => {
    const error = await dial(4000, AGENT_PORT).then(
      (socket) => {
        socket.destroy();
        throw new Error("connected to CID 4000");
      },
      (failure: unknown) => failure as { code?: string; message: string },
    );
    if (!error.code?.startsWith("E")) throw new Error(`expected an errno error, got ${error.message}`);
    return error.message;
  });

  await check("vsock: data both ways through a listener of our own", async () => {
    const server = listenVsock(0xffffffff);
    server.on("connection", (socket) => socket.pipe(socket));
    try {
      const socket = await dial(VMADDR_CID_LOCAL, server.port);
      const payload = Buffer.alloc(1024 * 1024, 7);
      const echoed: Buffer[] = [];
      let length = 0;
      await new Promise<void>((resolve, reject) => {
        socket.on("data", (chunk: Buffer) => {
          echoed.push(chunk);
          length += chunk.length;
          if (length >= payload.length) resolve();
        });
        socket.on("error", reject);
        socket.write(payload);
      });
      socket.destroy();
      if (!Buffer.concat(echoed).equals(payload)) throw new Error("echoed bytes differ");
      return `1 MiB echoed on port ${server.port}`;
    } finally {
      server.close();
    }
  });

  await check("agent fd count unchanged after 1,000 connections", async () => {
    const pid = agentPid();
    await http2Touch();
    await sleep(300);
    const before = fdCount(pid);
    const started = Date.now();
    let next = 0;
    const worker = async () => {
      while (next < 1000) {
        const n = next++;
        if (n % 2 === 0) {
          await http2Touch();
        } else {
          // Connect and close without a byte: the agent must still let go of it.
          (await dial(VMADDR_CID_LOCAL, AGENT_PORT)).destroy();
        }
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const elapsed = Date.now() - started;
    // A library client per connection too: full gRPC sessions, opened and closed.
    for (let i = 0; i < 20; i++) {
      const extra = agentClient();
      await extra.stat("/");
      await extra.close();
    }
    const after = await waitFor("the agent's fds to settle", 10_000, () =>
      fdCount(pid) <= before ? fdCount(pid) : undefined,
    ).catch(() => fdCount(pid));
    if (agentPid() !== pid) throw new Error("the agent restarted during the test");
    expectEqual(after, before, "agent fd count");
    return `${before} fds before, ${after} after; 1,000 connections in ${elapsed} ms`;
  });

  await check("a local call without the token is refused", async () => {
    const anonymous = createGuestClient(`vsock:1:${AGENT_PORT}`);
    try {
      const error = await anonymous.run(["true"]).then(
        () => undefined,
        (caught: unknown) => caught as Error & { reason?: string },
      );
      if (error === undefined) throw new Error("a call without the token ran");
      return `${error.reason}: ${error.message.slice(0, 120)}`;
    } finally {
      await anonymous.close();
    }
  });

  await check("without a token the agent serves only the host: CID 1 is refused and logged", async () => {
    const agent = spawn("/opt/guestkit/agent/bin/guest-agent", ["--listen", "vsock:3334"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    agent.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    try {
      await waitFor("the tokenless agent", 120_000, () =>
        stderr.includes("serving on vsock:3334") ? true : undefined,
      );
      const local = createGuestClient("vsock:1:3334");
      const error = await local.run(["id", "-u"]).then(
        () => undefined,
        (caught: unknown) => caught as Error,
      );
      await local.close();
      if (error === undefined) throw new Error("a process inside the guest ran a command through a tokenless agent");
      await waitFor("the refusal in the agent's log", 10_000, () =>
        stderr.includes("refused a connection from CID 1") ? true : undefined,
      );
      return error.message.slice(0, 120);
    } finally {
      agent.kill("SIGTERM");
      await new Promise((resolve) => agent.once("exit", resolve));
    }
  });

  await check("--listen vsock:PORT serves on that port", async () => {
    const agent = spawn("/opt/guestkit/agent/bin/guest-agent", ["--listen", "vsock:3333", "--token-file", TOKEN_FILE], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    agent.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    try {
      await waitFor("the second agent", 120_000, () => (stderr.includes("serving on vsock:3333") ? true : undefined));
      const other = agentClient(3333);
      const result = await other.run(["echo", "from 3333"]);
      await other.close();
      expectEqual(result.stdout, "from 3333\n", "output");
      return undefined;
    } finally {
      agent.kill("SIGTERM");
      await new Promise((resolve) => agent.once("exit", resolve));
    }
  });

  await check("init restarts the agent when it dies", async () => {
    const pid = agentPid();
    process.kill(pid, "SIGKILL");
    const newPid = await waitFor("a new agent", 60_000, () => {
      try {
        const found = agentPid();
        return found !== pid ? found : undefined;
      } catch {
        return undefined;
      }
    });
    const fresh = agentClient();
    await fresh.waitUntilReady({ timeoutMs: 120_000 });
    const result = await fresh.run(["echo", "back"]);
    await fresh.close();
    expectEqual(result.stdout, "back\n", "output after restart");
    if (zombies().length > 0) throw new Error(`zombies after the restart: ${zombies().join(", ")}`);
    return `pid ${pid} -> ${newPid}`;
  });

  await client.close();
  const failed = results.filter((result) => !result.ok).length;
  say(`verdict ${failed === 0 ? "PASS" : "FAIL"}: ${results.length - failed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    say(`FAIL harness: ${(error as Error).stack ?? error}`);
    process.exit(1);
  },
);
