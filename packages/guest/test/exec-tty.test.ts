// Exec in TTY mode: a real pseudo-terminal, its size, EOF, the controlling terminal,
// output at exit, and what one terminal session can see of another.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AgentClient,
  collect,
  type ExecCall,
  groupGone,
  killGroup,
  requests,
  runExec,
  startAgentClient,
  startRequest,
  stdinRequest,
  text,
  waitFor,
} from "./exec-client.js";

let env: AgentClient;

beforeAll(async () => {
  env = await startAgentClient();
});

afterAll(async () => {
  await env?.close();
});

describe("terminal size", () => {
  it("starts at 24x80 when the client gives 0x0", async () => {
    const result = await runExec(env.client, { command: ["stty", "size"], tty: true });
    expect(text(result.stdout)).toBe("24 80\r\n");
    expect(result.exitCode).toBe(0);
  });

  it("starts at the size the client gives", async () => {
    const result = await runExec(env.client, { command: ["stty", "size"], tty: true, rows: 40, cols: 132 });
    expect(text(result.stdout)).toBe("40 132\r\n");
  });

  it("applies resize, and the command gets SIGWINCH", async () => {
    const script = 'trap "stty size" WINCH; stty size; echo ready; read line; stty size';
    let resized = false;
    const result = await runExec(
      env.client,
      { command: ["sh", "-c", script], tty: true },
      {
        halfClose: false,
        onResponse: (response, call) => {
          if (
            response.response.case === "stdout" &&
            !resized &&
            text(Buffer.from(response.response.value)).includes("ready")
          ) {
            resized = true;
            call.write(requests.resize(50, 100));
            call.write(stdinRequest("\n"));
          }
          if (response.response.case === "exitCode") call.end();
        },
      },
    );
    const lines = text(result.stdout)
      .split("\r\n")
      .filter((line) => /^\d+ \d+$/.test(line));
    // Before, from the WINCH trap, after.
    expect(lines).toEqual(["24 80", "50 100", "50 100"]);
  });
});

describe("terminal behaviour", () => {
  it("defaults TERM to xterm-256color, and keeps the request's", async () => {
    const byDefault = await runExec(env.client, { command: ["sh", "-c", 'echo "$TERM"'], tty: true });
    expect(text(byDefault.stdout)).toBe("xterm-256color\r\n");
    const given = await runExec(env.client, {
      command: ["sh", "-c", 'echo "$TERM"'],
      tty: true,
      env: { TERM: "vt100" },
    });
    expect(text(given.stdout)).toBe("vt100\r\n");
  });

  it("merges stderr into stdout", async () => {
    const result = await runExec(env.client, { command: ["sh", "-c", "echo out; echo err >&2"], tty: true });
    expect(text(result.stdout)).toBe("out\r\nerr\r\n");
    expect(result.kinds).not.toContain("stderr");
  });

  it("gives the command a controlling terminal: ^C interrupts it", async () => {
    // cat's own copy of the line (after the terminal's echo) shows it is running; no
    // shell in between, which could lose the signal between its fork and exec.
    let seen = "";
    let interrupted = false;
    const result = await runExec(
      env.client,
      { command: ["cat"], tty: true },
      {
        stdin: ["hello\n"],
        halfClose: false,
        onResponse: (response, call) => {
          if (response.response.case === "stdout") seen += text(Buffer.from(response.response.value));
          if (!interrupted && seen === "hello\r\nhello\r\n") {
            interrupted = true;
            call.write(stdinRequest("\x03"));
          }
          if (response.response.case === "exitCode") call.end();
        },
      },
    );
    expect(result.exit).toMatchObject({ code: 130, signal: "SIGINT" });
  });

  it("runs as another user with only that user's group", async () => {
    const result = await runExec(env.client, {
      command: ["sh", "-c", "id -u; id -G"],
      tty: true,
      user: "nobody",
      cwd: "/",
    });
    expect(text(result.stdout)).toBe("65534\r\n65534\r\n");
  });

  it("reports a missing command as 127 on stdout, in terminal line endings", async () => {
    const result = await runExec(env.client, { command: ["no-such-command-guestkit"], tty: true });
    expect(result.exit).toMatchObject({ code: 127, startFailed: true });
    expect(text(result.stdout)).toBe("no-such-command-guestkit: command not found\r\n");
    expect(result.kinds).toEqual(["stdout", "exit", "exitCode"]);
  });
});

describe("stdin EOF", () => {
  it("sends ^D on half-close", async () => {
    const result = await runExec(env.client, { command: ["cat"], tty: true }, { stdin: ["hello\n"] });
    expect(result.exitCode).toBe(0);
    // The terminal echoes the line, then cat writes it.
    expect(text(result.stdout)).toBe("hello\r\nhello\r\n");
  });

  it("sends ^D on stdin_close, with the stream still open", async () => {
    const call = env.client.exec(new grpc.Metadata());
    const result = collect(call);
    call.write(startRequest({ command: ["sh", "-c", "cat >/dev/null; echo eof-seen"], tty: true }));
    call.write(stdinRequest("line\n"));
    call.write(requests.stdinClose());
    const done = await result;
    expect(text(done.stdout)).toContain("eof-seen");
    expect(done.exitCode).toBe(0);
    call.end();
  });

  it("ends input even in the middle of a line", async () => {
    const result = await runExec(env.client, { command: ["wc", "-c"], tty: true }, { stdin: ["abc"] });
    expect(result.exitCode).toBe(0);
    // The terminal's echo of "abc", then wc's count on the same line.
    expect(text(result.stdout)).toMatch(/^abc\s*3\r\n$/);
  });
});

describe("output at exit", () => {
  it("loses nothing a command printed right before exiting (30 runs)", async () => {
    const count = 2000;
    const expected = `${Array.from({ length: count }, (_, i) => i + 1).join("\r\n")}\r\n`;
    for (let run = 0; run < 30; run++) {
      const result = await runExec(env.client, { command: ["seq", "1", String(count)], tty: true });
      expect(text(result.stdout)).toBe(expected);
      expect(result.exitCode).toBe(0);
    }
  });

  it("loses nothing while the client is slow to read", async () => {
    const call = env.client.exec(new grpc.Metadata());
    const result = collect(call, (response) => {
      if (response.response.case === "started") {
        call.pause();
        setTimeout(() => call.resume(), 1000);
      }
    });
    call.write(startRequest({ command: ["seq", "1", "100000"], tty: true }));
    call.end();
    const done = await result;
    const lines = text(done.stdout).split("\r\n");
    expect(lines.at(-2)).toBe("100000");
    expect(lines.length).toBe(100001);
    expect(done.exit?.outputTruncated).toBe(false);
  });

  it("does not wait for a background process that keeps the terminal open", async () => {
    const started = Date.now();
    // nohup-style: the background process ignores the hangup and keeps the terminal.
    const result = await runExec(env.client, {
      command: ["sh", "-c", "trap '' HUP; sleep 30 & echo hi"],
      tty: true,
    });
    killGroup(result.pid);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(text(result.stdout)).toBe("hi\r\n");
    expect(result.exit).toMatchObject({ code: 0, outputTruncated: true });
  });
});

describe("isolation between commands", () => {
  it("gives no command another command's terminal", async () => {
    // A terminal session stays open while other commands start, in both modes.
    const holder = env.client.exec(new grpc.Metadata());
    let holderPid = 0;
    const holderDone = collect(holder, (response) => {
      if (response.response.case === "started") holderPid = response.response.value.pid;
    });
    holder.write(startRequest({ command: ["sleep", "100"], tty: true }));
    await waitFor(() => holderPid > 0, 5000, "the first terminal session");

    // The shell's own descriptors; the one it used to read the directory is gone by then.
    const listFds = 'for f in /proc/$$/fd/*; do readlink "$f" || true; done';
    for (const tty of [true, false]) {
      for (const user of ["", "nobody"]) {
        const result = await runExec(env.client, { command: ["sh", "-c", listFds], tty, user, cwd: "/" });
        expect(result.exitCode).toBe(0);
        const targets = text(result.stdout).split(/\r?\n/).filter(Boolean);
        expect(targets.length).toBeGreaterThanOrEqual(3);
        expect(targets.filter((target) => target.includes("ptmx"))).toEqual([]);
      }
    }
    holder.cancel();
    await holderDone;
    await waitFor(() => groupGone(holderPid, env.agent.pid), 4000, "the first session to end");
  });

  it("starts commands the same way while another terminal is open", async () => {
    // With another command's terminal open (its master is not close-on-exec), TTY
    // commands must start just the same.
    const holder = env.client.exec(new grpc.Metadata());
    let holderPid = 0;
    const holderDone = collect(holder, (response) => {
      if (response.response.case === "started") holderPid = response.response.value.pid;
    });
    holder.write(startRequest({ command: ["sleep", "100"], tty: true }));
    await waitFor(() => holderPid > 0, 5000, "the first terminal session");

    const asNobody = await runExec(env.client, {
      command: ["sh", "-c", "id -u; id -G"],
      tty: true,
      user: "nobody",
      cwd: "/",
    });
    expect(text(asNobody.stdout)).toBe("65534\r\n65534\r\n");

    // Whatever the request's environment says, only the command sees it.
    const hostileEnv = await runExec(env.client, {
      command: ["sh", "-c", 'echo "$NODE_OPTIONS"'],
      tty: true,
      env: { NODE_OPTIONS: "--no-such-node-flag" },
    });
    expect(hostileEnv.exitCode).toBe(0);
    expect(text(hostileEnv.stdout)).toBe("--no-such-node-flag\r\n");

    // A script without "#!" runs with /bin/sh, as execvp does in pipe mode.
    const dir = mkdtempSync(join(tmpdir(), "guestkit-tty-"));
    const script = join(dir, "no-shebang");
    writeFileSync(script, "echo no-shebang-ran\n");
    chmodSync(script, 0o755);
    for (const tty of [true, false]) {
      const result = await runExec(env.client, { command: [script], tty });
      expect(text(result.stdout)).toBe(tty ? "no-shebang-ran\r\n" : "no-shebang-ran\n");
    }
    rmSync(dir, { recursive: true, force: true });

    // SIGPIPE has its default action: `yes | head` ends instead of spinning on EPIPE.
    const pipeline = await runExec(env.client, {
      command: ["sh", "-c", "yes | head -n 2"],
      tty: true,
      timeoutSeconds: 10,
    });
    expect(pipeline.exit).toMatchObject({ code: 0, timedOut: false });

    holder.cancel();
    await holderDone;
  });

  it("cancelling a terminal session kills its whole session", async () => {
    const call: ExecCall = env.client.exec(new grpc.Metadata());
    let pid = 0;
    const done = collect(call, (response) => {
      if (response.response.case === "started") pid = response.response.value.pid;
    });
    call.write(startRequest({ command: ["sh", "-c", "sleep 100 & sleep 100"], tty: true }));
    await waitFor(() => pid > 0, 5000, "started");
    await new Promise((resolve) => setTimeout(resolve, 200));
    call.cancel();
    await done;
    await waitFor(() => groupGone(pid, env.agent.pid), 4000, "the session to end");
  });
});
