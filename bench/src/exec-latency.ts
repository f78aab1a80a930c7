// Exec latency of `true`: our client on an open connection and on a fresh connection
// through the hybrid-vsock handshake, the local spawn floor, and OpenSSH with and
// without a control connection.
import { spawn } from "node:child_process";
import { createGuestClient, type GuestClient } from "@guestkit/host";
import type { HybridVsockEndpoint } from "@guestkit/testkit";
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
  for (let i = 0; i < Math.max(counts.local, counts.open); i++) {
    if (i < counts.local) local.push(...(await timeEach(1, () => spawnTrue())));
    if (i < counts.open) open.push(...(await timeEach(1, () => runTrue(client))));
  }
  rows.push(measured(SECTION, "local spawn('true') (floor)", "ms", local, { p99: true }));
  rows.push(measured(SECTION, "guestkit, open connection", "ms", open, { p99: true }));

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
