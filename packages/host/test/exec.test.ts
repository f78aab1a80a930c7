// exec() against the real agent through the hybrid-vsock stand-in: every option, stdin
// with backpressure and EOF, and every kind of exit.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Capability } from "@guestkit/protocol";
import { describe, expect, it } from "vitest";
import type { ExecHandle, ExecOutput } from "../src/exec/exec-handle.js";
import { Code, GuestError } from "../src/guest-error.js";
import { processExists, rejection, useGuestFixture, waitFor } from "./guest-fixture.js";

const suite = useGuestFixture({ tempDirPrefix: "guestkit-exec-test-" });

async function collect(handle: ExecHandle): Promise<{ stdout: string; stderr: string; events: ExecOutput[] }> {
  const events: ExecOutput[] = [];
  for await (const event of handle) events.push(event);
  const text = (stream: "stdout" | "stderr") =>
    Buffer.concat(events.filter((event) => event.stream === stream).map((event) => event.data)).toString();
  return { stdout: text("stdout"), stderr: text("stderr"), events };
}

describe("exit statuses", () => {
  it("0, with stdout and stderr as separate events", async () => {
    const handle = suite.guest.client().exec(["sh", "-c", "echo out; echo err >&2"]);
    const { stdout, stderr, events } = await collect(handle);
    expect(stdout).toBe("out\n");
    expect(stderr).toBe("err\n");
    expect(events.every((event) => event.data instanceof Uint8Array)).toBe(true);
    expect(await handle.exit).toEqual({
      code: 0,
      signal: null,
      timedOut: false,
      truncated: false,
      startFailed: false,
      startError: null,
      unknown: false,
    });
  });

  it("3 is data, not an exception", async () => {
    const exit = await suite.guest.client().exec(["sh", "-c", "exit 3"]).exit;
    expect(exit.code).toBe(3);
    expect(exit.startFailed).toBe(false);
  });

  it("124 after the timeout, with timedOut", async () => {
    const exit = await suite.guest.client().exec(["sleep", "30"], { timeoutSeconds: 1 }).exit;
    expect(exit.code).toBe(124);
    expect(exit.timedOut).toBe(true);
  });

  it("127 for a command that does not exist, told apart from the command's own 127", async () => {
    const client = suite.guest.client();
    const missing = await client.exec(["no-such-command-guestkit"]).exit;
    expect(missing.code).toBe(127);
    expect(missing.startFailed).toBe(true);
    expect(missing.startError).toEqual(expect.any(String));
    expect(missing.startError).not.toBe("");
    const own = await client.exec(["sh", "-c", "exit 127"]).exit;
    expect(own.code).toBe(127);
    expect(own.startFailed).toBe(false);
    expect(own.startError).toBeNull();
  });

  it("128+9 for a command killed by SIGKILL", async () => {
    const exit = await suite.guest.client().exec(["sh", "-c", "kill -9 $$"]).exit;
    expect(exit.code).toBe(137);
    expect(exit.signal).toBe("SIGKILL");
  });
});

describe("options", () => {
  it("env is added to the agent's environment", async () => {
    const { stdout } = await collect(
      suite.guest.client().exec(["sh", "-c", 'printf "%s|%s" "$GUESTKIT_A" "$GUESTKIT_B"'], {
        env: { GUESTKIT_A: "one", GUESTKIT_B: "two words = and more" },
      }),
    );
    expect(stdout).toBe("one|two words = and more");
  });

  it("cwd", async () => {
    const { stdout } = await collect(suite.guest.client().exec(["pwd"], { cwd: suite.dir }));
    expect(stdout).toBe(`${suite.dir}\n`);
  });

  it("a cwd that does not exist is a start failure", async () => {
    const exit = await suite.guest.client().exec(["pwd"], { cwd: join(suite.dir, "missing") }).exit;
    expect(exit.startFailed).toBe(true);
    expect(exit.code).toBe(126);
  });

  it("user, by name and by uid", async () => {
    const client = suite.guest.client();
    const byName = await collect(client.exec(["id", "-u"], { user: "nobody" }));
    expect(byName.stdout).toBe("65534\n");
    const byUid = await collect(client.exec(["sh", "-c", "id -u; id -g"], { user: "65534:65534" }));
    expect(byUid.stdout).toBe("65534\n65534\n");
    const byNumber = await collect(client.exec(["id", "-u"], { user: 65534 }));
    expect(byNumber.stdout).toBe("65534\n");
  });

  it("tty with rows and cols, and resize()", async () => {
    const handle = suite.guest.client().exec(["sh", "-c", "stty size; read line; stty size"], {
      tty: true,
      rows: 33,
      cols: 101,
      stdin: true,
    });
    let seen = "";
    let resized = false;
    for await (const event of handle) {
      expect(event.stream).toBe("stdout");
      seen += Buffer.from(event.data).toString();
      if (!resized && seen.includes("33 101")) {
        resized = true;
        handle.resize(50, 132);
        handle.stdin.write("go\n");
      }
    }
    expect(seen).toContain("33 101");
    expect(seen).toContain("50 132");
    expect((await handle.exit).code).toBe(0);
  });

  it("a tty without stdin sees EOF at once", async () => {
    const exit = await suite.guest.client().exec(["cat"], { tty: true }).exit;
    expect(exit.code).toBe(0);
  });

  it("kill() sends a signal to the process group", async () => {
    const client = suite.guest.client();
    const term = client.exec(["sleep", "60"]);
    await term.started;
    term.kill();
    expect(await term.exit).toMatchObject({ code: 143, signal: "SIGTERM" });
    const int = client.exec(["sleep", "60"]);
    await int.started;
    int.kill("INT");
    expect(await int.exit).toMatchObject({ code: 130, signal: "SIGINT" });
    const byNumber = client.exec(["sleep", "60"]);
    byNumber.kill(9);
    expect(await byNumber.exit).toMatchObject({ code: 137, signal: "SIGKILL" });
  });

  it("kill() of an unknown signal throws at once", () => {
    const handle = suite.guest.client().exec(["true"]);
    expect(() => handle.kill("NOTASIGNAL")).toThrow(/unknown signal/);
  });

  it("an AbortSignal cancels the call, and the agent ends the command", async () => {
    const controller = new AbortController();
    const handle = suite.guest.client().exec(["sleep", "60"], { signal: controller.signal });
    const pid = await handle.started;
    expect(pid).toEqual(expect.any(Number));
    expect(processExists(pid as number)).toBe(true);
    controller.abort();
    const error = await rejection(handle.exit);
    expect(error.code).toBe(Code.CANCELLED);
    expect(error.reason).toBe("cancelled");
    await waitFor(() => !processExists(pid as number));
  });

  it("AbortSignal.timeout() is reported as a deadline", async () => {
    const handle = suite.guest.client().exec(["sleep", "60"], { signal: AbortSignal.timeout(300) });
    const error = await rejection(handle.exit);
    expect(error.code).toBe(Code.DEADLINE_EXCEEDED);
  });

  it("pid and started agree with the command's own $$", async () => {
    const handle = suite.guest.client().exec(["sh", "-c", "echo $$"]);
    const { stdout } = await collect(handle);
    const pid = await handle.started;
    expect(handle.pid).toBe(pid);
    expect(stdout).toBe(`${pid}\n`);
  });

  it("bad arguments throw before anything is sent", () => {
    const client = suite.guest.client();
    const invalid = (run: () => unknown) => {
      try {
        run();
      } catch (error) {
        expect(error).toBeInstanceOf(GuestError);
        expect((error as GuestError).code).toBe(Code.INVALID_ARGUMENT);
        return;
      }
      throw new Error("did not throw");
    };
    invalid(() => client.exec([]));
    invalid(() => client.exec(["a\0b"]));
    invalid(() => client.exec(["true"], { env: { "A=B": "x" } }));
    invalid(() => client.exec(["true"], { timeoutSeconds: 1.5 }));
    invalid(() => client.exec(["true"], { rows: 0 }));
    invalid(() => client.exec(["true"], { user: -1 }));
  });
});

describe("stdin", () => {
  it("without stdin the command sees EOF at once", async () => {
    const handle = suite.guest.client().exec(["cat"]);
    expect((await collect(handle)).stdout).toBe("");
    expect((await handle.exit).code).toBe(0);
  });

  it("writes go to the command and end() is EOF", async () => {
    const handle = suite.guest.client().exec(["sh", "-c", "cat; echo after-eof"], { stdin: true });
    handle.stdin.write("hello ");
    handle.stdin.end("world\n");
    const { stdout } = await collect(handle);
    expect(stdout).toBe("hello world\nafter-eof\n");
  });

  it("backpressure: a command that does not read holds the writer, then gets every byte", async () => {
    const go = join(suite.dir, "go");
    // The command reads nothing until the test creates `go`.
    const handle = suite.guest.client().exec(["sh", "-c", `while [ ! -e ${go} ]; do sleep 0.05; done; exec wc -c`], {
      stdin: true,
    });
    await handle.started;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let accepted = 0;
    let waitedOut = false;
    // Write until a drain does not come for a while: the pipeline to the guest is full.
    while (!waitedOut && accepted < 256 * 1024 * 1024) {
      while (handle.stdin.write(chunk)) accepted += chunk.length;
      accepted += chunk.length;
      waitedOut = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          handle.stdin.off("drain", onDrain);
          resolve(true);
        }, 500);
        const onDrain = () => {
          clearTimeout(timer);
          resolve(false);
        };
        handle.stdin.once("drain", onDrain);
      });
    }
    // Bounded: pipe, HTTP/2 windows and a few buffers, not everything we offered.
    expect(waitedOut).toBe(true);
    expect(accepted).toBeLessThan(64 * 1024 * 1024);
    await writeFile(go, "");
    handle.stdin.end();
    const { stdout } = await collect(handle);
    expect(Number(stdout.trim())).toBe(accepted);
    expect((await handle.exit).code).toBe(0);
  });

  it("kill() reaches a command behind 32 MiB of stdin it never reads, within a second", async () => {
    // Control messages share the stream with stdin: they must not queue behind it.
    const handle = suite.guest.client().exec(["sleep", "1000"], { stdin: true });
    await handle.started;
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 32; i++) handle.stdin.write(chunk);
    // Long enough for the pipe, the agent and the connection to fill up.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sent = performance.now();
    handle.kill("KILL");
    const exit = await Promise.race([
      handle.exit,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5000)),
    ]);
    expect(exit).toMatchObject({ code: 137, signal: "SIGKILL" });
    expect(performance.now() - sent).toBeLessThan(1000);
  });

  it("writes after the command exited are dropped quietly", async () => {
    const handle = suite.guest.client().exec(["true"], { stdin: true });
    await handle.exit;
    await new Promise<void>((resolve, reject) => {
      handle.stdin.on("error", reject);
      handle.stdin.end("ignored", () => resolve());
    });
  });
});

describe("against guestkit's agent", () => {
  it("sees every capability, and uses them: EOF by stdin_close keeps the stream open for signals", async () => {
    const client = suite.guest.client();
    expect([...(await client.capabilities())].sort()).toEqual(Object.values(Capability).sort());
    // No stdin: EOF at once. Had it been a half-close, the signal could not be sent.
    const handle = client.exec(["sh", "-c", "cat; exec sleep 30"]);
    await handle.started;
    handle.kill("TERM");
    expect(await handle.exit).toMatchObject({ code: 128 + 15, signal: "SIGTERM", unknown: false });
  });
});

describe("output flow", () => {
  it("output nobody iterates is dropped past the limit, and the exit still comes", async () => {
    const handle = suite.guest.client().exec(["head", "-c", "5000000", "/dev/zero"], { unconsumedOutputLimit: 1000 });
    const exit = await handle.exit;
    expect(exit.code).toBe(0);
    expect(handle.droppedBytes).toBeGreaterThan(4_000_000);
  });

  it("leaving the iteration early still delivers the exit", async () => {
    const handle = suite.guest.client().exec(["sh", "-c", "echo first; head -c 5000000 /dev/zero"]);
    for await (const event of handle) {
      expect(Buffer.from(event.data).toString()).toContain("first");
      break;
    }
    expect((await handle.exit).code).toBe(0);
  });

  it("large output arrives complete and in order while iterating", async () => {
    const handle = suite.guest.client().exec(["sh", "-c", "seq 1 200000"]);
    const { stdout } = await collect(handle);
    const lines = stdout.trimEnd().split("\n");
    expect(lines.length).toBe(200000);
    expect(lines[0]).toBe("1");
    expect(lines[199999]).toBe("200000");
  });

  it("the output can be iterated only once", async () => {
    const handle = suite.guest.client().exec(["true"]);
    await collect(handle);
    expect(() => handle[Symbol.asyncIterator]()).toThrow(/only once/);
  });

  it("client.close() ends running commands with reason closed", async () => {
    const client = suite.guest.client();
    const handle = client.exec(["sleep", "60"]);
    const pid = (await handle.started) as number;
    await client.close();
    const error = await rejection(handle.exit);
    expect(error.reason).toBe("closed");
    await waitFor(() => !processExists(pid));
  });
});
