// The README's first command: the demo runs the real agent behind the hybrid-vsock
// stand-in and drives it with guestctl. It must exit 0 and leave nothing behind.
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { processExists } from "./guest-fixture.js";

const run = promisify(execFile);
const DEMO = fileURLToPath(new URL("../../testkit/dist/demo.js", import.meta.url));

// Processes whose command line mentions `text`.
function processesMentioning(text: string): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe("demo", () => {
  it("exits 0 with a readable transcript, and cleans up everything it started", async () => {
    const { stdout, stderr } = await run(process.execPath, [DEMO], { timeout: 60_000 });
    expect(stderr).toBe("");
    expect(stdout).toContain("  hello from Linux\n  [stderr] this goes to stderr\n  -> exit 3\n");
    expect(stdout).toContain(
      "$ guestctl exec -- no-such-command\n  [stderr] no-such-command: command not found\n  -> exit 127\n",
    );
    expect(stdout).toContain("$ guestctl exec --timeout 1 -- sleep 30\n  -> exit 124\n");
    expect(stdout).toContain("  STDIN STREAMS IN, EOF INCLUDED\n");
    expect(stdout).toContain("tree/bin/hello ran: its mode came along");
    expect(stdout).toContain("identical to the original");
    expect(stdout).toMatch(/saw \d+ connections, each opened with "CONNECT 2222\\n" and answered OK/);

    const dir = /removing (\S+)\n/.exec(stdout)?.[1] ?? "";
    expect(dir).toMatch(/guestkit-demo-/);
    expect(existsSync(dir)).toBe(false);
    const agentPid = Number(/guest-agent \(pid (\d+)\)/.exec(stdout)?.[1]);
    expect(agentPid).toBeGreaterThan(0);
    expect(processExists(agentPid)).toBe(false);
    expect(processesMentioning(dir)).toEqual([]);
  });
});
