// The OpenSSH reference: an sshd on 127.0.0.1 with a throwaway host key, user key and
// config, all in the workspace, and the ssh command lines that reach it.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { userInfo } from "node:os";
import { join } from "node:path";
import { runCommand } from "./workspace.js";

const SSHD = "/usr/sbin/sshd";

/** A running sshd and how to reach it. */
export interface OpenSsh {
  /** ssh arguments up to (and including) the host, for one fresh connection per command. */
  readonly direct: string[];
  /** The same through a persistent control connection (ControlMaster/ControlPersist). */
  readonly multiplexed: string[];
  /** Stops the control connection and sshd. */
  stop(): Promise<void>;
}

/**
 * Starts sshd, installing Debian's openssh-server first when it is missing and we are
 * root. Rejects with a reason a reader can act on when it cannot.
 */
export async function startOpenSsh(dir: string): Promise<OpenSsh> {
  if (!existsSync(SSHD)) await installOpenSshServer();
  if (!existsSync("/usr/bin/ssh")) throw new Error("ssh (openssh-client) is not installed");
  const hostKey = join(dir, "host_ed25519");
  const userKey = join(dir, "user_ed25519");
  await runCommand("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKey]);
  await runCommand("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", userKey]);
  const authorizedKeys = join(dir, "authorized_keys");
  await runCommand("cp", [`${userKey}.pub`, authorizedKeys]);
  const port = await freePort();
  const config = join(dir, "sshd_config");
  await writeFile(
    config,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      // The keys live in a temp dir that sshd's ownership checks would reject.
      "StrictModes no",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      "Subsystem sftp internal-sftp",
      "",
    ].join("\n"),
  );
  // sshd refuses to start without its privilege separation directory.
  await runCommand("mkdir", ["-p", "/run/sshd"]);
  const sshd = spawn(SSHD, ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  sshd.stderr?.setEncoding("utf8").on("data", (text: string) => {
    log += text;
  });
  const base = [
    "-F",
    "/dev/null",
    "-i",
    userKey,
    "-p",
    String(port),
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    `UserKnownHostsFile=${join(dir, "known_hosts")}`,
    "-o",
    "LogLevel=ERROR",
  ];
  const host = `${userInfo().username}@127.0.0.1`;
  const controlPath = join(dir, "cm-%C");
  const multiplexed = [
    ...base,
    "-o",
    "ControlMaster=auto",
    "-o",
    `ControlPath=${controlPath}`,
    "-o",
    "ControlPersist=300",
    host,
  ];
  const direct = [...base, "-o", "ControlMaster=no", "-o", "ControlPath=none", host];
  try {
    await waitForSshd(direct, sshd, () => log);
  } catch (error) {
    sshd.kill();
    throw error;
  }
  return {
    direct,
    multiplexed,
    async stop() {
      await runCommand("ssh", [...multiplexed.slice(0, -1), "-O", "exit", host]).catch(() => {});
      await stopProcess(sshd);
    },
  };
}

async function installOpenSshServer(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error(`${SSHD} is missing and we are not root to apt-get install openssh-server`);
  process.stderr.write("bench: installing openssh-server with apt-get...\n");
  // Only the binary is wanted. RUNLEVEL=1 asks invoke-rc.d not to start the package's
  // system sshd on port 22; a machine that runs systemd may start ssh.service anyway.
  const env = { DEBIAN_FRONTEND: "noninteractive", RUNLEVEL: "1" };
  const install = () =>
    runCommand("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "openssh-server"], { env });
  try {
    await install();
  } catch {
    await runCommand("apt-get", ["update", "-qq"], { env });
    await install();
  }
  if (!existsSync(SSHD)) throw new Error("apt-get install openssh-server did not provide /usr/sbin/sshd");
}

// sshd forks per connection; it is up when a command goes through.
async function waitForSshd(direct: string[], sshd: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  let last: unknown;
  while (Date.now() < deadline) {
    if (sshd.exitCode !== null) throw new Error(`sshd exited: ${log().trim()}`);
    try {
      await runCommand("ssh", [...direct, "true"]);
      return;
    } catch (error) {
      last = error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`sshd did not accept a login: ${(last as Error)?.message ?? ""} ${log().trim()}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/** SIGTERM, then wait for the exit. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}
