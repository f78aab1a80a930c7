// Same-run A/B of the data connection: one agent, the same 256 MiB file, copies through
// a connection that uses the data connection and through one where the capability is
// hidden (in-band over HTTP/2), alternated round by round.
//   guest-agent --listen unix:/dev/shm/ab/a.sock &
//   head -c 268435456 /dev/urandom > /dev/shm/ab/big
//   sh scripts/with-toolchain.sh node bench/data-connection-ab.mjs /dev/shm/ab/a.sock /dev/shm/ab
import { rmSync } from "node:fs";
import { join } from "node:path";
import { copyFrom } from "../packages/host/dist/copy/copy-from.js";
import { copyTo } from "../packages/host/dist/copy/copy-to.js";
import { GuestConnection } from "../packages/host/dist/transport/guest-connection.js";

const [socketPath, dir] = process.argv.slice(2);
const connection = new GuestConnection({ kind: "unix", path: socketPath });
const channel = await connection.ready();
const inBand = Object.create(channel);
inBand.has = (name) => name !== "data-connection" && channel.has(name);
const big = join(dir, "big");
const rate = (ms) => (256 / (ms / 1000)).toFixed(0);
for (let round = 0; round < 6; round++) {
  for (const [name, through] of [
    ["data connection", channel],
    ["in-band        ", inBand],
  ]) {
    rmSync(join(dir, "up"), { force: true });
    rmSync(join(dir, "down"), { force: true });
    let start = performance.now();
    await copyTo(through, big, join(dir, "up"));
    const up = performance.now() - start;
    start = performance.now();
    await copyFrom(through, big, join(dir, "down"));
    const down = performance.now() - start;
    console.log(`${name}  to ${rate(up)} MiB/s  from ${rate(down)} MiB/s`);
  }
}
await connection.close();
