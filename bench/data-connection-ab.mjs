// Same-run A/B of data connections: one agent, two clients of it, one that takes the
// data connections the agent offers and one that declines them (`dataConnections:
// false`, everything in-band over HTTP/2), alternated round by round, each round moving
// the same bytes: a copy of a 256 MiB file both ways, 256 MiB of a command's stdout, and
// 256 MiB each way through a port forward to a TCP echo server. Medians of 6 rounds.
//   mkdir -p /dev/shm/ab && guest-agent --listen unix:/dev/shm/ab/a.sock &
//   head -c 268435456 /dev/urandom > /dev/shm/ab/big
//   sh scripts/with-toolchain.sh node bench/data-connection-ab.mjs /dev/shm/ab/a.sock /dev/shm/ab
import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { createGuestClient } from "../packages/host/dist/index.js";

const [socketPath, dir] = process.argv.slice(2);
const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
const ROUNDS = 6;
const clients = {
  "data connection": createGuestClient({ kind: "unix", path: socketPath }),
  "in-band": createGuestClient({ kind: "unix", path: socketPath, dataConnections: false }),
};

// An echo server on this machine, which plays the guest for the forwards.
const echo = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
await new Promise((resolve) => echo.listen(0, "127.0.0.1", resolve));
const echoPort = echo.address().port;
const chunk = Buffer.alloc(MiB, 0x5a);

async function timed(body) {
  const start = performance.now();
  await body();
  return SIZE / MiB / ((performance.now() - start) / 1000);
}

const figures = {
  "copy to": async (client) => {
    rmSync(join(dir, "up"), { force: true });
    return timed(() => client.copyTo(join(dir, "big"), join(dir, "up")));
  },
  "copy from": async (client) => {
    rmSync(join(dir, "down"), { force: true });
    return timed(() => client.copyFrom(join(dir, "big"), join(dir, "down")));
  },
  stdout: (client) =>
    timed(async () => {
      const handle = client.exec(["head", "-c", String(SIZE), "/dev/zero"]);
      let received = 0;
      for await (const { data } of handle) received += data.byteLength;
      if (received !== SIZE || (await handle.exit).code !== 0) throw new Error(`stdout: ${received} bytes`);
    }),
  "forward, each way": (client) =>
    timed(async () => {
      const forwarded = await client.forwardPort(echoPort);
      let received = 0;
      const ended = new Promise((resolve, reject) => {
        forwarded.on("data", (data) => {
          received += data.length;
        });
        forwarded.once("end", resolve);
        forwarded.once("error", reject);
      });
      for (let sent = 0; sent < SIZE; sent += MiB) {
        if (!forwarded.write(chunk)) await new Promise((resolve) => forwarded.once("drain", resolve));
      }
      forwarded.end();
      await ended;
      if (received !== SIZE) throw new Error(`forward: ${received} bytes back`);
    }),
};

const results = new Map();
for (let round = 0; round < ROUNDS; round++) {
  for (const [mode, client] of Object.entries(clients)) {
    for (const [figure, measure] of Object.entries(figures)) {
      const key = `${figure}|${mode}`;
      results.set(key, [...(results.get(key) ?? []), await measure(client)]);
    }
  }
}
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
console.log(`MiB/s, median of ${ROUNDS} alternated rounds, 256 MiB each:`);
console.log("| figure | data connection | in-band | ratio |");
console.log("| --- | --- | --- | --- |");
for (const figure of Object.keys(figures)) {
  const data = median(results.get(`${figure}|data connection`));
  const inBand = median(results.get(`${figure}|in-band`));
  console.log(`| ${figure} | ${data.toFixed(0)} | ${inBand.toFixed(0)} | ${(data / inBand).toFixed(2)}x |`);
}
for (const client of Object.values(clients)) await client.close();
echo.close();
