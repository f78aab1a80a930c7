// The agent in a real Linux guest: Debian's kernel under QEMU (software emulation),
// the image `pnpm guest-image` builds, and inside it a client of the host library
// talking to the agent over real AF_VSOCK loopback (CID 1). The in-guest script
// (guest/e2e.ts) prints one line per check and hands its verdict to QEMU's exit
// status through isa-debug-exit. The serial console is printed when anything fails.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildE2eInitramfs } from "./e2e-overlay.ts";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const IMAGE_DIR = join(REPO_ROOT, ".guest-image");
// isa-debug-exit turns the guest's byte into (byte << 1) | 1: 32 is PASS.
const PASS_STATUS = 65;
const QEMU_LIMIT_MS = 420_000;

/** Every check the in-guest script must report as ok. */
const EXPECTED_CHECKS = [
  "agent ready over AF_VSOCK loopback",
  "exec: stdout, stderr and exit code",
  "exec: stdin EOF ends cat",
  "exec: TTY size, resize, stty size",
  "exec: TTY stdin EOF",
  "exec: timeout gives 124",
  "exec: each command in a cgroup of its own, and a timeout ends its setsid child",
  "copy: upload and download a tree, modes and times kept",
  "stat: /tmp is a 01777 directory, a missing path does not exist",
  "detached: outlives its client, keeps its output, kill ends it",
  "port forward: a TCP server inside the guest, through ForwardPort",
  "data connections over vsock: 16 MiB of output, a 16 MiB file each way, a forward of 4 MiB",
  "orphans are reaped: no zombie after background children exit",
  "vsock: connecting to a port nobody listens on fails at once",
  "vsock: a CID with no transport behind it fails at once",
  "vsock: data both ways through a listener of our own",
  "agent fd count unchanged after 1,000 connections",
  "a local call without the token is refused",
  "without a token the agent serves only the host: CID 1 is refused and logged",
  "--listen vsock:PORT serves on that port",
  "init restarts the agent when it dies",
];

let workDir: string;
let initramfs: string;
let qemu: ChildProcess | undefined;

beforeAll(() => {
  for (const tool of ["qemu-system-x86_64", "cc"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) {
      throw new Error(`${tool} is not installed (apt-get install qemu-system-x86 gcc): the QEMU test needs it`);
    }
  }
  // The real command users run; cached, so a second run costs only the input hash.
  const build = spawnSync(process.execPath, [join(REPO_ROOT, "scripts", "guest-image", "build.ts")], {
    cwd: REPO_ROOT,
    encoding: "utf8",
  });
  if (build.status !== 0) throw new Error(`pnpm guest-image failed:\n${build.stdout}${build.stderr}`);
  process.stdout.write(build.stderr);
  workDir = mkdtempSync(join(tmpdir(), "guestkit-qemu-"));
  initramfs = buildE2eInitramfs(join(IMAGE_DIR, "initramfs.cpio"), workDir);
}, 600_000);

afterAll(async () => {
  if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
    qemu.kill("SIGKILL");
    await new Promise((resolve) => qemu?.once("exit", resolve));
  }
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

it(
  "runs exec, TTY, copy, stat, orphan reaping and 1,000 vsock connections inside a real guest",
  async () => {
    const serial = join(workDir, "serial.log");
    const started = Date.now();
    qemu = spawn(
      "qemu-system-x86_64",
      [
        ...["-accel", "tcg", "-nic", "none", "-m", "1G", "-smp", "2"],
        ...["-display", "none", "-monitor", "none", "-no-reboot"],
        ...["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
        ...["-serial", `file:${serial}`],
        ...["-kernel", join(IMAGE_DIR, "vmlinux"), "-initrd", initramfs],
        ...["-append", "console=ttyS0 panic=-1 quiet"],
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let qemuOutput = "";
    qemu.stdout?.on("data", (chunk: Buffer) => {
      qemuOutput += chunk.toString();
    });
    qemu.stderr?.on("data", (chunk: Buffer) => {
      qemuOutput += chunk.toString();
    });
    const log = () => (existsSync(serial) ? readFileSync(serial, "utf8") : "");
    let agentReadyMs: number | undefined;
    const watch = setInterval(() => {
      if (agentReadyMs === undefined && log().includes("guest-agent: serving on vsock:2222")) {
        agentReadyMs = Date.now() - started;
      }
    }, 100);
    const status = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => qemu?.kill("SIGKILL"), QEMU_LIMIT_MS);
      qemu?.once("exit", (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
    clearInterval(watch);
    const elapsed = Date.now() - started;
    const console = log();
    const report = `QEMU exit status ${status} after ${elapsed} ms\n${qemuOutput}--- serial console ---\n${console}`;
    const lines = console.split(/\r?\n/).filter((line) => line.startsWith("guestkit-e2e: "));
    const passed = EXPECTED_CHECKS.filter((name) =>
      lines.some((line) => line.startsWith(`guestkit-e2e: ok ${name} (`)),
    );
    const verdict = lines.find((line) => line.startsWith("guestkit-e2e: verdict "));
    process.stdout.write(
      `guest image: vmlinux ${mib(join(IMAGE_DIR, "vmlinux"))}, initramfs.cpio ${mib(join(IMAGE_DIR, "initramfs.cpio"))}` +
        ` (test archive added: ${mib(initramfs)}); boot to agent ready ${agentReadyMs ?? "?"} ms;` +
        ` QEMU run ${elapsed} ms\n${lines.join("\n")}\n`,
    );
    expect(passed, report).toEqual(EXPECTED_CHECKS);
    expect(verdict, report).toBe(`guestkit-e2e: verdict PASS: ${EXPECTED_CHECKS.length} passed, 0 failed`);
    expect(status, report).toBe(PASS_STATUS);
    // The image carries the posix_spawn addon and the guest kernel has pidfds: commands
    // start without fork (packages/posix-spawn), or the agent says why not.
    expect(console, report).not.toContain("commands start with fork");
  },
  QEMU_LIMIT_MS + 30_000,
);

function mib(path: string): string {
  return `${(statSync(path).size / 1048576).toFixed(1)} MiB`;
}
