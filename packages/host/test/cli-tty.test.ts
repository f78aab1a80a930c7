// `guestctl exec -t` on a real pseudo-terminal: the size is sent at the start and on
// every resize, keys reach the remote terminal, and the local terminal is restored on
// every way out (checked with `stty -g` before and after, in the same terminal).
import { describe, expect, it } from "vitest";
import { childPids, guestctlCommand, type PtySession, startPty, stopAll } from "./cli-support.js";
import { useGuestFixture, waitFor } from "./guest-fixture.js";

const suite = useGuestFixture({ afterEachTest: stopAll });

// Runs guestctl between two `stty -g` in one terminal; the script ends by printing
// guestctl's status and the terminal state after it.
function session(args: string[], size = { rows: 30, cols: 100 }): PtySession {
  const script = `stty -g; echo BEGIN; ${guestctlCommand(["--target", suite.guest.target, ...args])}; echo "rc=$?"; stty -g; echo END`;
  return startPty(script, size);
}

// The terminal settings before and after guestctl, and guestctl's status.
async function outcome(pty: PtySession): Promise<{ before: string; after: string; status: number }> {
  await pty.waitFor(/END\r\n/);
  await pty.exited;
  const output = pty.output();
  const before = /^(.*)\r\nBEGIN\r\n/.exec(output)?.[1] ?? "";
  const tail = /rc=(\d+)\r\n(.*)\r\nEND\r\n/.exec(output);
  return { before, after: tail?.[2] ?? "", status: Number(tail?.[1] ?? -1) };
}

describe("exec -t", () => {
  it("sends the terminal size and every resize, and restores the terminal", async () => {
    const pty = session(["exec", "-t", "-i", "--", "sh", "-c", "stty size; while read line; do stty size; done"]);
    await pty.waitFor("30 100\r\n");
    const mark = pty.output().length;
    pty.pty.resize(120, 40);
    // The resize and the Enter travel separately; press Enter until the new size shows.
    const seen = pty.waitFor("40 120\r\n", mark);
    let looking = true;
    void seen.then(() => {
      looking = false;
    });
    while (looking) {
      pty.pty.write("\r");
      await Promise.race([seen, new Promise((resolve) => setTimeout(resolve, 100))]);
    }
    // Ctrl-D in raw mode is a byte for the remote terminal: `read` sees end-of-file there.
    pty.pty.write("\x04");
    const { before, after, status } = await outcome(pty);
    expect(status).toBe(0);
    expect(before).toMatch(/^[0-9a-f:]+$/);
    expect(after).toBe(before);
  });

  it("the local terminal is raw while the command runs: keys are not echoed twice", async () => {
    const pty = session(["exec", "-t", "-i", "--", "sh", "-c", "stty -echo; echo ready; read line; echo got:$line"]);
    await pty.waitFor("ready\r\n");
    const mark = pty.output().length;
    pty.pty.write("secret\r");
    await pty.waitFor("got:secret\r\n", mark);
    // The remote terminal does not echo, and neither may ours (a cooked terminal would).
    expect(pty.output().slice(mark)).not.toContain("secret\r\ngot");
    expect(pty.output().slice(mark).indexOf("secret")).toBe(pty.output().slice(mark).indexOf("got:secret") + 4);
    const { before, after, status } = await outcome(pty);
    expect(status).toBe(0);
    expect(after).toBe(before);
  });

  it("Ctrl-C with -i reaches the remote terminal, which interrupts the command", async () => {
    const pty = session(["exec", "-t", "-i", "--", "sh", "-c", "echo ready; sleep 30"]);
    await pty.waitFor("ready\r\n");
    pty.pty.write("\x03");
    const { before, after, status } = await outcome(pty);
    expect(status).toBe(130);
    expect(after).toBe(before);
  });

  it("Ctrl-C without -i still interrupts the command (sent as SIGINT)", async () => {
    // Short sleeps: see the signal tests in cli-exec.test.ts.
    const pty = session([
      "exec",
      "-t",
      "--",
      "sh",
      "-c",
      'trap "echo got-int; exit 7" INT; echo ready; while :; do sleep 0.2; done',
    ]);
    await pty.waitFor("ready\r\n");
    pty.pty.write("\x03");
    await pty.waitFor("got-int");
    const { before, after, status } = await outcome(pty);
    expect(status).toBe(7);
    expect(after).toBe(before);
  });

  it("restores the terminal when guestctl gets SIGTERM", async () => {
    const pty = session(["exec", "-t", "-i", "--", "sh", "-c", "echo ready; sleep 30"]);
    await pty.waitFor("ready\r\n");
    // The shell of the script runs guestctl (node) as its child.
    let guestctl: number | undefined;
    await waitFor(() => {
      guestctl = childPids(pty.pty.pid)[0];
      return guestctl !== undefined;
    });
    process.kill(guestctl as number, "SIGTERM");
    const { before, after, status } = await outcome(pty);
    // SIGTERM went on to the remote command, which died of it.
    expect(status).toBe(143);
    expect(after).toBe(before);
  });

  it("restores the terminal when the agent cannot be reached", async () => {
    const script = `stty -g; echo BEGIN; ${guestctlCommand(["--target", `${suite.guest.target.replace(/:2222$/, ":2299")}`, "exec", "-t", "-i", "--", "sh"])}; echo "rc=$?"; stty -g; echo END`;
    const pty = startPty(script, { rows: 24, cols: 80 });
    const { before, after, status } = await outcome(pty);
    expect(status).toBe(255);
    expect(pty.output()).toContain("guestctl: ");
    expect(after).toBe(before);
  });
});
