// Exec latency of `true`: our client on an open connection and on a fresh connection
// through the hybrid-vsock handshake, the local spawn floor, and OpenSSH with and
// without a control connection.
import { spawn } from "node:child_process";
import { createGuestClient, type GuestClient } from "@guestkit/host";
import { GUESTCTL_BIN, type HybridVsockEndpoint } from "@guestkit/testkit";
import type { OpenSsh } from "./openssh.js";
import { type Measurement, measured, skipped, timeEach } from "./stats.js";
import { runCommand } from "./workspace.js";

const SECTION = "exec `true` latency";

/** How many times each variant runs. */
export interface ExecLatencyCounts {
  local: number;
  open: number;
  fresh: number;
  sshMultiplexed: number;
  sshDirect: number;
  /** Whole `guestctl exec -- true` commands (and `node -e 0` beside them). */
  cli: number;
}

/** Runs `true` once through the client and checks it really ran. */
export async function runTrue(client: GuestClient): Promise<void> {
  const result = await client.run(["true"]);
  if (result.exit.code !== 0) throw new Error(`true exited ${result.exit.code}`);
}

/** Measures every variant; a variant that cannot run becomes a skipped row. */
export async function measureExecLatency(
  client: GuestClient,
  endpoint: HybridVsockEndpoint,
  ssh: OpenSsh | Error,
  counts: ExecLatencyCounts,
): Promise<Measurement[]> {
  const rows: Measurement[] = [];
  const warm = 20;
  await timeEach(warm, () => spawnTrue());
  await timeEach(warm, () => runTrue(client));
  // Alternated, so that both see the same machine at the same moment.
  const local: number[] = [];
  const open: number[] = [];
  // The client's own CPU per call: this process's CPU time across each call alone (the
  // local spawns in between are not counted).
  const clientCpu: number[] = [];
  for (let i = 0; i < Math.max(counts.local, counts.open); i++) {
    if (i < counts.local) local.push(...(await timeEach(1, () => spawnTrue())));
    if (i < counts.open) {
      const before = process.cpuUsage();
      open.push(...(await timeEach(1, () => runTrue(client))));
      const used = process.cpuUsage(before);
      clientCpu.push((used.user + used.system) / 1000);
    }
  }
  rows.push(measured(SECTION, "local spawn('true') (floor)", "ms", local, { p99: true }));
  rows.push(measured(SECTION, "guestkit, open connection", "ms", open, { p99: true }));
  rows.push(
    measured(SECTION, "guestkit, open connection: client CPU per exec", "ms", clientCpu, {
      note: "CPU time of the client process (user + system) across one run(['true'])",
    }),
  );

  // The whole command, as a shell script runs it: Node's start, guestctl's start-up,
  // connect, the capability check, exec, exit. `node -e 0` is the floor of any Node CLI.
  const cliArgs = ["--target", endpoint.target(), "exec", "--", "true"];
  await timeEach(3, () => runCommand(GUESTCTL_BIN, cliArgs));
  const cli: number[] = [];
  const nodeFloor: number[] = [];
  for (let i = 0; i < counts.cli; i++) {
    cli.push(...(await timeEach(1, () => runCommand(GUESTCTL_BIN, cliArgs))));
    nodeFloor.push(...(await timeEach(1, () => runCommand(process.execPath, ["-e", "0"]))));
  }
  rows.push(
    measured(SECTION, "guestctl exec -- true, whole command", "ms", cli, {
      p99: true,
      note: "the guestctl launcher through the hybrid-vsock endpoint: start, connect, exec, exit",
    }),
  );
  rows.push(measured(SECTION, "node -e 0 (CLI floor)", "ms", nodeFloor, { p99: true }));

  const target = endpoint.target();
  const fresh = async () => {
    const once = createGuestClient(target);
    try {
      await runTrue(once);
    } finally {
      await once.close();
    }
  };
  await timeEach(3, fresh);
  rows.push(
    measured(SECTION, "guestkit, fresh connection (hvsock handshake)", "ms", await timeEach(counts.fresh, fresh), {
      p99: true,
      note: "new client each time: dial, CONNECT/OK, HTTP/2 setup, exec",
    }),
  );

  if (ssh instanceof Error) {
    rows.push(skipped(SECTION, "ssh, ControlMaster", "ms", ssh.message));
    rows.push(skipped(SECTION, "ssh, new connection", "ms", ssh.message));
    return rows;
  }
  await timeEach(3, () => runCommand("ssh", [...ssh.multiplexed, "true"]));
  rows.push(
    measured(
      SECTION,
      "ssh, ControlMaster",
      "ms",
      await timeEach(counts.sshMultiplexed, () => runCommand("ssh", [...ssh.multiplexed, "true"])),
      { p99: true },
    ),
  );
  rows.push(
    measured(
      SECTION,
      "ssh, new connection",
      "ms",
      await timeEach(counts.sshDirect, () => runCommand("ssh", [...ssh.direct, "true"])),
      { p99: true },
    ),
  );
  return rows;
}

function spawnTrue(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("true", { stdio: "ignore" });
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`true exited ${code}`))));
  });
}
