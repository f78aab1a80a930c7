// `guestctl exec` as a real process against the real agent behind the hybrid-vsock
// stand-in: every option, stdin, exit statuses, signals and guestctl's own failures.
import { readFileSync } from "node:fs";
import { startHybridVsockEndpoint } from "@guestkit/testkit";
import { describe, expect, it } from "vitest";
import { runCli, startCli, stopAll } from "./cli-support.js";
import { processExists, useGuestFixture, waitFor } from "./guest-fixture.js";

const suite = useGuestFixture({ afterEachTest: stopAll });

const exec = (args: string[], options: Parameters<typeof runCli>[1] = {}) =>
  runCli(["--target", suite.guest.target, "exec", ...args], options);

describe("exit statuses", () => {
  it("0, with stdout and stderr each to its own", async () => {
    const result = await exec(["--", "sh", "-c", "echo out; echo err >&2"]);
    expect(result).toMatchObject({ code: 0, stdout: "out\n", stderr: "err\n" });
  });

  it("the command's own status", async () => {
    expect((await exec(["--", "sh", "-c", "exit 3"])).code).toBe(3);
  });

  it("127 for a command that does not exist, with the agent's reason on stderr", async () => {
    const result = await exec(["--", "no-such-command-here"]);
    expect(result.code).toBe(127);
    expect(result.stderr).toBe("no-such-command-here: command not found\n");
  });

  it("126 for a command that cannot be run", async () => {
    const result = await exec(["--", "/etc"]);
    expect(result.code).toBe(126);
    expect(result.stderr).toContain("/etc");
  });

  it("128+9 for a command killed by SIGKILL", async () => {
    expect((await exec(["--", "sh", "-c", "kill -9 $$"])).code).toBe(137);
  });

  it("124 when --timeout fires", async () => {
    const result = await exec(["--timeout", "1", "--", "sleep", "30"]);
    expect(result.code).toBe(124);
  });

  it("without --, the first word starts the command and later options are its own", async () => {
    const result = await exec(["sh", "-c", "echo $0 $1", "-x", "--timeout"]);
    expect(result).toMatchObject({ code: 0, stdout: "-x --timeout\n" });
  });
});

describe("options", () => {
  it("-e sets variables; -e NAME passes the local value", async () => {
    const result = await exec(
      ["-e", "A=1", "-e", "B=x=y", "-e", "LOCAL_ONLY", "--", "sh", "-c", "echo $A $B $LOCAL_ONLY"],
      {
        env: { LOCAL_ONLY: "from-here" },
      },
    );
    expect(result).toMatchObject({ code: 0, stdout: "1 x=y from-here\n" });
  });

  it("short options combine: -it", async () => {
    const result = await exec(["-it", "--", "sh", "-c", "test -t 0 && test -t 1 && cat"], { input: "typed\n" });
    // The remote terminal echoes what it is given, then cat writes it back.
    expect(result).toMatchObject({ code: 0, stdout: "typed\r\ntyped\r\n" });
  });

  it("-w sets the working directory", async () => {
    expect((await exec(["-w", "/usr", "--", "pwd"])).stdout).toBe("/usr\n");
  });

  it("-u nobody runs as nobody, with nobody's HOME", async () => {
    const result = await exec(["-u", "nobody", "--", "sh", "-c", 'id -un; echo "$HOME"']);
    expect(result.code).toBe(0);
    const [name, home] = result.stdout.trim().split("\n");
    expect(name).toBe("nobody");
    const passwd = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((line) => line.startsWith("nobody:"));
    expect(home).toBe(passwd?.split(":")[5]);
  });

  it("-u with an unknown user: 126 and the reason", async () => {
    const result = await exec(["-u", "no-such-user-x", "--", "true"]);
    expect(result.code).toBe(126);
    expect(result.stderr).toContain("no-such-user-x");
  });
});

describe("stdin", () => {
  it("-i streams stdin and passes its EOF on", async () => {
    const result = await exec(["-i", "--", "sh", "-c", "cat; echo EOF-SEEN"], { input: "line 1\nline 2\n" });
    expect(result).toMatchObject({ code: 0, stdout: "line 1\nline 2\nEOF-SEEN\n" });
  });

  it("-i with a large input keeps every byte", async () => {
    const input = Buffer.alloc(8 * 1024 * 1024, "abcdefgh");
    const result = await exec(["-i", "--", "wc", "-c"], { input });
    expect(result.stdout.trim()).toBe(String(input.length));
  });

  it("without -i the command sees EOF at once, though our stdin stays open", async () => {
    // runCli leaves stdin an open pipe when no input is given.
    const result = await exec(["--", "sh", "-c", "cat; echo EOF-SEEN"]);
    expect(result).toMatchObject({ code: 0, stdout: "EOF-SEEN\n" });
  });
});

describe("output", () => {
  it("large output arrives whole, in order", async () => {
    const result = await exec(["--", "sh", "-c", "seq 1 200000"]);
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines.length).toBe(200000);
    expect(lines[199999]).toBe("200000");
  });

  it("a reader that goes away gives the command SIGPIPE (exit 141), as locally", async () => {
    const cli = startCli(["--target", suite.guest.target, "exec", "--", "yes"]);
    await cli.waitForOutput("y\n");
    cli.child.stdout?.destroy();
    const result = await cli.result;
    expect(result.code).toBe(141);
  });
});

// The remote scripts sleep in short steps: a signal that lands while sh is between
// fork and exec of `sleep` is lost by the child, and sh runs its trap only once the
// foreground command ends; with `sleep 30` that would be 30 s later.
describe("signals without -t", () => {
  it("SIGINT goes to the remote command, and guestctl exits with its status", async () => {
    const cli = startCli([
      "--target",
      suite.guest.target,
      "exec",
      "--",
      "sh",
      "-c",
      'trap "echo got-int; exit 7" INT; echo ready; while :; do sleep 0.2; done',
    ]);
    await cli.waitForOutput("ready\n");
    cli.child.kill("SIGINT");
    const result = await cli.result;
    expect(result).toMatchObject({ code: 7, signal: null, stdout: "ready\ngot-int\n" });
  });

  it("with -i, one SIGINT reaches a command that has not read 32 MiB of its stdin", async () => {
    const input = Buffer.alloc(32 * 1024 * 1024, 0x61);
    const cli = startCli(
      ["--target", suite.guest.target, "exec", "-i", "--", "sh", "-c", "echo ready; exec sleep 1000"],
      {
        input,
      },
    );
    await cli.waitForOutput("ready\n");
    // Long enough for our stdin, the pipe, the agent and the connection to fill up.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sent = performance.now();
    cli.child.kill("SIGINT");
    const result = await Promise.race([
      cli.result,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5000)),
    ]);
    expect(result).toMatchObject({ code: 130, stdout: "ready\n" });
    expect(result?.stderr).not.toContain("gave up");
    expect(performance.now() - sent).toBeLessThan(1000);
  });

  it("SIGTERM goes to the remote command too", async () => {
    const cli = startCli([
      "--target",
      suite.guest.target,
      "exec",
      "--",
      "sh",
      "-c",
      'trap "echo got-term; exit 9" TERM; echo ready; while :; do sleep 0.2; done',
    ]);
    await cli.waitForOutput("ready\n");
    cli.child.kill("SIGTERM");
    expect(await cli.result).toMatchObject({ code: 9, stdout: "ready\ngot-term\n" });
  });

  it("a command that ignores them: the third signal gives up, and the agent kills it", async () => {
    const cli = startCli(["--target", suite.guest.target, "exec", "--", "sh", "-c", 'trap "" INT; echo $$; sleep 30']);
    await cli.waitForOutput("\n");
    const pid = Number(cli.stdout().trim());
    expect(processExists(pid)).toBe(true);
    for (let i = 0; i < 3; i += 1) {
      cli.child.kill("SIGINT");
      // Each must be handled before the next: signals of one kind do not queue.
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const result = await cli.result;
    expect(result.code).toBe(130);
    expect(result.stderr).toContain("gave up");
    await waitFor(() => !processExists(pid));
  });
});

describe("exec's usage errors exit 2 and its own failures 255, with one line", () => {
  it("a bad target names the accepted forms", async () => {
    const result = await runCli(["--target", "vsock:x", "exec", "--", "true"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^guestctl: bad target "vsock:x": .*hvsock:PATH\[:PORT\], vsock:CID\[:PORT\], unix:PATH or tcp:HOST\[:PORT\]/,
    );
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("no target at all", async () => {
    const result = await runCli(["exec", "--", "true"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("GUESTCTL_TARGET");
  });

  it("GUESTCTL_TARGET is used when --target is not given", async () => {
    const result = await runCli(["exec", "--", "echo", "hi"], { env: { GUESTCTL_TARGET: suite.guest.target } });
    expect(result).toMatchObject({ code: 0, stdout: "hi\n" });
  });

  it("an unknown option", async () => {
    const result = await exec(["--bogus", "--", "true"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe("guestctl: unknown option '--bogus' (see guestctl exec --help)\n");
  });

  it("a bad --timeout, a bad -e", async () => {
    expect(await exec(["--timeout", "1.5", "--", "true"])).toMatchObject({ code: 2 });
    const unset = await exec(["-e", "SURELY_UNSET_VARIABLE_X", "--", "true"]);
    expect(unset.code).toBe(2);
    expect(unset.stderr).toContain("SURELY_UNSET_VARIABLE_X is not set here");
  });

  it("a connection that drops while the command runs: the outcome is unknown, 255", async () => {
    const endpoint = await startHybridVsockEndpoint();
    endpoint.register(2222, suite.guest.agent.socketPath);
    try {
      const cli = startCli(["--target", endpoint.target(2222), "exec", "--", "sh", "-c", "echo ready; sleep 30"]);
      await cli.waitForOutput("ready\n");
      await endpoint.close();
      const result = await cli.result;
      expect(result.code).toBe(255);
      expect(result.stderr).toMatch(/^guestctl: .+\n$/);
    } finally {
      await endpoint.close();
    }
  });

  it("a command is required", async () => {
    const result = await exec([]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("missing required argument");
  });

  it("--help prints the usage and exits 0", async () => {
    const result = await exec(["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Usage: guestctl exec [options] [--] COMMAND [ARG...]");
  });
});
