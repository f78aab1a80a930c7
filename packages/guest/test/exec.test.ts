// Exec over real gRPC on a real Unix socket against the real agent binary: exit codes,
// output streams, stdin, signals, environment, protocol errors, logging.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { CHUNK_SIZE, EXEC_STDIN_WINDOW_BYTES } from "@guestkit/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AgentClient,
  collect,
  requests,
  runExec,
  startAgentClient,
  startRequest,
  stdinRequest,
  text,
} from "./exec-client.js";

let env: AgentClient;
let dir: string;

beforeAll(async () => {
  env = await startAgentClient();
  dir = mkdtempSync(join(tmpdir(), "guestkit-exec-"));
});

afterAll(async () => {
  await env?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("exit codes", () => {
  it("reports 0, with started first and exit_code last", async () => {
    const result = await runExec(env.client, { command: ["true"] });
    expect(result.status.code).toBe(grpc.status.OK);
    expect(result.kinds).toEqual(["started", "exit", "exitCode"]);
    expect(result.pid).toBeGreaterThan(1);
    expect(result.exitCode).toBe(0);
    expect(result.exit).toMatchObject({ code: 0, signal: "", timedOut: false, startFailed: false });
  });

  it("reports the command's own code", async () => {
    const result = await runExec(env.client, { command: ["sh", "-c", "exit 3"] });
    expect(result.exitCode).toBe(3);
    expect(result.exit?.code).toBe(3);
    expect(result.kinds.at(-1)).toBe("exitCode");
  });

  it("reports death by signal N as 128+N with the signal's name", async () => {
    const result = await runExec(env.client, { command: ["sh", "-c", "kill -9 $$"] });
    expect(result.exitCode).toBe(137);
    expect(result.exit).toMatchObject({ code: 137, signal: "SIGKILL", timedOut: false });
  });

  it("reports a command that is not found as 127, with the reason on stderr", async () => {
    const result = await runExec(env.client, { command: ["no-such-command-guestkit"] });
    expect(result.status.code).toBe(grpc.status.OK);
    expect(result.kinds).toEqual(["stderr", "exit", "exitCode"]);
    expect(result.exitCode).toBe(127);
    expect(result.exit).toMatchObject({ code: 127, startFailed: true });
    expect(result.exit?.startError).toContain("no-such-command-guestkit");
    expect(text(result.stderr)).toMatch(/^no-such-command-guestkit: command not found\n$/);
  });

  it("reports a missing path as 127", async () => {
    const result = await runExec(env.client, { command: [join(dir, "missing")] });
    expect(result.exit).toMatchObject({ code: 127, startFailed: true });
  });

  it("reports a file that is not executable as 126", async () => {
    const file = join(dir, "not-executable.sh");
    writeFileSync(file, "#!/bin/sh\necho should not run\n");
    chmodSync(file, 0o644);
    const result = await runExec(env.client, { command: [file] });
    expect(result.exit).toMatchObject({ code: 126, startFailed: true });
    expect(text(result.stderr)).toContain("permission denied");
    expect(text(result.stdout)).toBe("");
  });

  it("reports a directory as command as 126", async () => {
    const result = await runExec(env.client, { command: [dir] });
    expect(result.exit).toMatchObject({ code: 126, startFailed: true });
  });

  it("reports a bad cwd as 126, not 127", async () => {
    const result = await runExec(env.client, { command: ["true"], cwd: join(dir, "no-such-dir") });
    expect(result.exitCode).toBe(126);
    expect(result.exit?.startFailed).toBe(true);
    expect(result.exit?.startError).toContain("no-such-dir");
  });

  it("reports an unknown user as 126", async () => {
    const result = await runExec(env.client, { command: ["true"], user: "no-such-user-guestkit" });
    expect(result.exitCode).toBe(126);
    expect(result.exit?.startError).toContain("no-such-user-guestkit");
    expect(text(result.stderr)).toContain("unknown user");
  });

  it("tells a command that itself exits 127 apart from one that never started", async () => {
    const result = await runExec(env.client, { command: ["sh", "-c", "exit 127"] });
    expect(result.exit).toMatchObject({ code: 127, startFailed: false, startError: "" });
    expect(result.kinds[0]).toBe("started");
  });
});

describe("output", () => {
  it("keeps stdout and stderr apart, each in order, after started", async () => {
    const script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done";
    const result = await runExec(env.client, { command: ["sh", "-c", script] });
    expect(text(result.stdout)).toBe("out1\nout2\nout3\nout4\nout5\n");
    expect(text(result.stderr)).toBe("err1\nerr2\nerr3\nerr4\nerr5\n");
    expect(result.kinds[0]).toBe("started");
    expect(result.kinds.slice(-2)).toEqual(["exit", "exitCode"]);
  });

  it("streams output while the command runs", async () => {
    const call = env.client.exec(new grpc.Metadata());
    let firstOutputAt = 0;
    const result = collect(call, (response) => {
      if (response.response.case === "stdout" && !firstOutputAt) {
        firstOutputAt = Date.now();
        // The command only goes on once its first line was seen by the client.
        call.write(stdinRequest("go\n"));
      }
    });
    call.write(startRequest({ command: ["sh", "-c", "echo first; read x; echo second"] }));
    const done = await result;
    expect(text(done.stdout)).toBe("first\nsecond\n");
    expect(done.exitCode).toBe(0);
    call.end();
  });

  it("loses nothing a command wrote right before it exited (30 runs)", async () => {
    const script = "seq 1 5000; seq 1 3000 >&2";
    const expectedOut = `${Array.from({ length: 5000 }, (_, i) => i + 1).join("\n")}\n`;
    const expectedErr = `${Array.from({ length: 3000 }, (_, i) => i + 1).join("\n")}\n`;
    for (let run = 0; run < 30; run++) {
      const result = await runExec(env.client, { command: ["sh", "-c", script] });
      expect(text(result.stdout)).toBe(expectedOut);
      expect(text(result.stderr)).toBe(expectedErr);
      expect(result.exit?.outputTruncated).toBe(false);
    }
  });

  it("sends large output in chunks no bigger than CHUNK_SIZE, all of it", async () => {
    const { CHUNK_SIZE } = await import("@guestkit/protocol");
    const call = env.client.exec(new grpc.Metadata());
    let biggest = 0;
    const result = collect(call, (response) => {
      if (response.response.case === "stdout") biggest = Math.max(biggest, response.response.value.length);
    });
    call.write(startRequest({ command: ["head", "-c", String(20 * 1024 * 1024), "/dev/zero"] }));
    call.end();
    const done = await result;
    expect(done.stdout.length).toBe(20 * 1024 * 1024);
    expect(biggest).toBeLessThanOrEqual(CHUNK_SIZE);
  });
});

describe("stdin", () => {
  it("forwards stdin and gives EOF on half-close", async () => {
    const result = await runExec(env.client, { command: ["cat"] }, { stdin: ["hello ", "world\n"] });
    expect(text(result.stdout)).toBe("hello world\n");
    expect(result.exitCode).toBe(0);
  });

  it("gives EOF on stdin_close while the stream stays open", async () => {
    const call = env.client.exec(new grpc.Metadata());
    const result = collect(call);
    call.write(startRequest({ command: ["sh", "-c", "cat; echo after-eof"] }));
    call.write(stdinRequest("abc"));
    call.write(requests.stdinClose());
    // No half-close: the command must still see EOF and the call must still finish.
    const done = await result;
    expect(text(done.stdout)).toBe("abcafter-eof\n");
    expect(done.exitCode).toBe(0);
    call.end();
  });

  it("passes binary stdin through unchanged", async () => {
    const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256));
    const result = await runExec(env.client, { command: ["cat"] }, { stdin: [bytes] });
    expect(result.stdout.equals(bytes)).toBe(true);
  });

  it("moves stdin larger than a pipe holds", async () => {
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    const result = await runExec(env.client, { command: ["wc", "-c"] }, { stdin: Array(40).fill(chunk) });
    expect(text(result.stdout).trim()).toBe(String(40 * chunk.length));
  });

  it("grants stdin credit: stdin_consumed follows what the command took, never past what was sent", async () => {
    // A client that keeps within the credit, as the host library does.
    const total = 8 * 1024 * 1024;
    const call = env.client.exec(new grpc.Metadata());
    let sent = 0;
    const reports: number[] = [];
    const chunk = Buffer.alloc(CHUNK_SIZE, 0x62);
    const sendWithinCredit = () => {
      const consumed = reports.at(-1) ?? 0;
      while (sent < total && sent - consumed < EXEC_STDIN_WINDOW_BYTES) {
        call.write(stdinRequest(chunk));
        sent += chunk.length;
      }
      if (sent === total) call.end();
    };
    const result = collect(call, (response) => {
      if (response.response.case !== "stdinConsumed") return;
      reports.push(Number(response.response.value));
      sendWithinCredit();
    });
    call.write(startRequest({ command: ["wc", "-c"] }));
    sendWithinCredit();
    const done = await result;
    expect(text(done.stdout).trim()).toBe(String(total));
    // Without reports the client would have stopped after one window.
    expect(reports.length).toBeGreaterThan(total / EXEC_STDIN_WINDOW_BYTES);
    expect(reports).toEqual([...reports].sort((a, b) => a - b));
    expect(Math.max(...reports)).toBeLessThanOrEqual(total);
  });
});

describe("signals", () => {
  it("forwards a signal by short name to the command", async () => {
    const script = 'trap "echo got-term; exit 5" TERM; echo ready; while :; do sleep 0.05; done';
    const result = await runExec(
      env.client,
      { command: ["sh", "-c", script] },
      {
        halfClose: false,
        onResponse: (response, call) => {
          if (response.response.case === "stdout" && text(Buffer.from(response.response.value)).includes("ready")) {
            call.write(requests.signal("TERM"));
          }
          if (response.response.case === "exitCode") call.end();
        },
      },
    );
    expect(text(result.stdout)).toBe("ready\ngot-term\n");
    expect(result.exitCode).toBe(5);
  });

  it("forwards SIGINT by full name; the death is 130", async () => {
    const result = await runExec(
      env.client,
      { command: ["sleep", "100"] },
      {
        halfClose: false,
        onResponse: (response, call) => {
          if (response.response.case === "started") call.write(requests.signal("SIGINT"));
          if (response.response.case === "exitCode") call.end();
        },
      },
    );
    expect(result.exit).toMatchObject({ code: 130, signal: "SIGINT" });
  });

  it("delivers a signal sent behind a window of stdin the command never reads", async () => {
    // The agent reads on while stdin waits in its queue: the signal is not held behind it.
    let sentAt = 0;
    const result = await runExec(
      env.client,
      { command: ["sleep", "100"] },
      {
        halfClose: false,
        onResponse: (response, call) => {
          if (response.response.case === "started") {
            for (let sent = 0; sent < EXEC_STDIN_WINDOW_BYTES; sent += CHUNK_SIZE) {
              call.write(stdinRequest(Buffer.alloc(CHUNK_SIZE, 0x63)));
            }
            setTimeout(() => {
              sentAt = performance.now();
              call.write(requests.signal("KILL"));
            }, 300);
          }
          if (response.response.case === "exitCode") call.end();
        },
      },
    );
    expect(result.exit).toMatchObject({ code: 137, signal: "SIGKILL" });
    expect(performance.now() - sentAt).toBeLessThan(1000);
  });

  it("refuses an unknown signal name with INVALID_ARGUMENT and ends the command", async () => {
    let pid = 0;
    const result = await runExec(
      env.client,
      { command: ["sleep", "100"] },
      {
        halfClose: false,
        onResponse: (response, call) => {
          if (response.response.case === "started") {
            pid = response.response.value.pid;
            call.write(requests.signal("SIGNOPE"));
          }
        },
      },
    );
    expect(result.status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(result.status.details).toContain("SIGNOPE");
    expect(result.exitCode).toBeUndefined();
    await expectGone(pid);
  });
});

describe("environment, cwd and user", () => {
  it("adds the request's env on top of the agent's, and runs in cwd", async () => {
    const result = await runExec(env.client, {
      command: ["sh", "-c", 'echo "$GUESTKIT_TEST_VAR|$PATH"; pwd'],
      env: { GUESTKIT_TEST_VAR: "value with spaces" },
      cwd: dir,
    });
    const [vars, cwd] = text(result.stdout).split("\n");
    expect(vars?.startsWith("value with spaces|")).toBe(true);
    expect(vars?.split("|")[1]).toBe(process.env.PATH);
    expect(cwd).toBe(dir);
  });

  it("runs as nobody by name, with HOME, USER and LOGNAME from /etc/passwd", async () => {
    const result = await runExec(env.client, {
      command: ["sh", "-c", 'id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"'],
      user: "nobody",
      cwd: "/",
    });
    expect(text(result.stdout)).toBe("65534\n65534\n65534\n/nonexistent nobody nobody\n");
  });

  it("runs as uid:gid", async () => {
    const result = await runExec(env.client, { command: ["sh", "-c", "id -u; id -G"], user: "65534:65534", cwd: "/" });
    expect(text(result.stdout)).toBe("65534\n65534\n");
  });

  it("refuses a cwd the user cannot enter with 126", async () => {
    const secret = mkdtempSync(join(dir, "private-"));
    chmodSync(secret, 0o700);
    const result = await runExec(env.client, { command: ["true"], user: "nobody", cwd: secret });
    expect(result.exit).toMatchObject({ code: 126, startFailed: true });
    expect(result.exit?.startError).toContain("permission denied");
  });

  it("runs an executable script without a #! line with /bin/sh, as execvp does", async () => {
    // execve refuses it (ENOEXEC); the spawn then runs /bin/sh FILE, as execvp does.
    const file = join(dir, "no-shebang");
    writeFileSync(file, 'echo "ran as $0"\n');
    chmodSync(file, 0o755);
    const result = await runExec(env.client, { command: [file] });
    expect(result.exit).toMatchObject({ code: 0, startFailed: false });
    expect(text(result.stdout)).toBe(`ran as ${file}\n`);
  });

  it("refuses a program the user may not execute with 126", async () => {
    const file = join(dir, "root-only.sh");
    writeFileSync(file, "#!/bin/sh\necho ran\n");
    chmodSync(file, 0o700);
    const result = await runExec(env.client, { command: [file], user: "nobody", cwd: "/" });
    expect(result.exit).toMatchObject({ code: 126, startFailed: true });
  });
});

describe("protocol errors", () => {
  async function expectInvalid(messages: Parameters<typeof startRequest>[0][] | "empty-stream" | "stdin-first") {
    const call = env.client.exec(new grpc.Metadata());
    const result = collect(call);
    if (messages === "stdin-first") call.write(stdinRequest("x"));
    else if (messages !== "empty-stream") for (const start of messages) call.write(startRequest(start));
    call.end();
    const done = await result;
    expect(done.status.code).toBe(grpc.status.INVALID_ARGUMENT);
    return done;
  }

  it("refuses a stream whose first message is not start", async () => {
    const done = await expectInvalid("stdin-first");
    expect(done.status.details).toContain("first");
  });

  it("refuses a stream that ends before start", async () => {
    await expectInvalid("empty-stream");
  });

  it("refuses an empty command", async () => {
    const done = await expectInvalid([{ command: [] }]);
    expect(done.kinds).toEqual([]);
  });

  it("refuses a second start, and ends the first command", async () => {
    const done = await expectInvalid([{ command: ["sleep", "100"] }, { command: ["true"] }]);
    expect(done.status.details).toContain("start");
    await expectGone(done.pid ?? 0);
  });

  it("refuses stdin after stdin_close, and a terminal size out of range", async () => {
    for (const late of [stdinRequest("late"), requests.resize(70000, 80)]) {
      const call = env.client.exec(new grpc.Metadata());
      const result = collect(call);
      call.write(startRequest({ command: ["sleep", "100"], tty: late.request.case === "resize" }));
      if (late.request.case === "stdin") call.write(requests.stdinClose());
      call.write(late);
      const done = await result;
      expect(done.status.code).toBe(grpc.status.INVALID_ARGUMENT);
      await expectGone(done.pid ?? 0);
      call.end();
    }
  });

  it("refuses a relative cwd, a NUL in an argument and a negative timeout", async () => {
    await expectInvalid([{ command: ["true"], cwd: "relative/dir" }]);
    await expectInvalid([{ command: ["echo", "a\0b"] }]);
    await expectInvalid([{ command: ["true"], timeoutSeconds: -1 }]);
  });
});

describe("compatibility and logging", () => {
  it("works for a client that knows only the original fields: exit_code comes last", async () => {
    // A client built from the original .proto: responses with fields 1-3 only; it skips
    // what it does not know, as protobuf decoders do.
    const legacy = new grpc.Client(`unix:${env.agent.socketPath}`, grpc.credentials.createInsecure());
    const call = legacy.makeBidiStreamRequest(
      "/guest.GuestService/Exec",
      (request: Buffer) => request,
      (bytes: Buffer) => decodeLegacyResponse(bytes),
    );
    const seen: Array<{ field: number; value: Buffer | number }> = [];
    const done = new Promise<grpc.StatusObject>((resolve) => {
      call.on("data", (message: Array<{ field: number; value: Buffer | number }>) => seen.push(...message));
      call.on("status", resolve);
    });
    // ExecRequest{start{command: ["sh", "-c", "..."]}} in the original encoding.
    const start = encodeLegacyStart(["sh", "-c", "echo out; echo err >&2; exit 4"]);
    call.write(start);
    call.end();
    const status = await done;
    legacy.close();
    expect(status.code).toBe(grpc.status.OK);
    expect(seen.at(-1)).toEqual({ field: 3, value: 4 });
    const stdout = seen.filter((m) => m.field === 1).map((m) => m.value.toString());
    const stderr = seen.filter((m) => m.field === 2).map((m) => m.value.toString());
    expect(stdout.join("")).toBe("out\n");
    expect(stderr.join("")).toBe("err\n");
  });

  it("logs the command's base name but never its arguments or environment", async () => {
    const result = await runExec(env.client, {
      command: ["/bin/echo", "secret-argument-5f3a"],
      env: { GUESTKIT_SECRET: "secret-env-9c1d" },
    });
    expect(text(result.stdout)).toBe("secret-argument-5f3a\n");
    // The agent's log reaches us through a pipe of its own, possibly after the reply.
    await expect.poll(() => env.agent.stderr(), { timeout: 5000 }).toMatch(/exec echo: started, pid \d+/);
    const log = env.agent.stderr();
    expect(log).not.toContain("secret-argument-5f3a");
    expect(log).not.toContain("secret-env-9c1d");
    expect(log).not.toContain("/bin/echo");
  });
});

async function expectGone(pid: number): Promise<void> {
  expect(pid).toBeGreaterThan(1);
  const deadline = Date.now() + 5000;
  for (;;) {
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) return;
    if (Date.now() > deadline) throw new Error(`process ${pid} is still there`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// The original ExecStart: command = 1 (repeated string); ExecRequest: start = 1.
function encodeLegacyStart(command: string[]): Buffer {
  const start = Buffer.concat(command.map((arg) => field(1, Buffer.from(arg))));
  return field(1, start);
}

function field(number: number, bytes: Buffer): Buffer {
  return Buffer.concat([varint((number << 3) | 2), varint(bytes.length), bytes]);
}

function varint(value: number): Buffer {
  const out: number[] = [];
  let rest = value;
  while (rest > 0x7f) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
  return Buffer.from(out);
}

// Decodes an ExecResponse knowing only stdout = 1, stderr = 2, exit_code = 3; skips the rest.
function decodeLegacyResponse(bytes: Buffer): Array<{ field: number; value: Buffer | number }> {
  const known: Array<{ field: number; value: Buffer | number }> = [];
  let offset = 0;
  const readVarint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[offset++] ?? 0;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  while (offset < bytes.length) {
    const tag = readVarint();
    const number = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (wireType === 0) {
      const value = readVarint();
      if (number === 3) known.push({ field: 3, value });
    } else if (wireType === 2) {
      const length = readVarint();
      const value = bytes.subarray(offset, offset + length);
      offset += length;
      if (number === 1 || number === 2) known.push({ field: number, value });
    } else {
      throw new Error(`unexpected wire type ${wireType}`);
    }
  }
  return known;
}
