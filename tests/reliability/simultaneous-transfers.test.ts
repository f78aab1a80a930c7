// Big uploads and downloads at the same time on one connection. A Node HTTP/2 session
// stops reading its socket while one of its own writes is pending; if each side may
// queue more than the socket buffers hold (an 8 MiB window granted both ways), each waits
// for the other to read and the connection freezes until keepalive drops it. It did, in
// the first round of this test when the host granted 8 MiB for downloads, and with 256
// KiB; the host's window stays at 128 KiB for that reason (HOST_HTTP2_WINDOW_BYTES in
// packages/protocol/src/limits.ts).
// Every transfer must complete intact.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGuestClient, type GuestClient } from "@guestkit/host";
import { type AgentProcess, startAgent } from "@guestkit/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";

const MiB = 1024 * 1024;
// Four times the window: far more than any socket buffer, in each direction at once.
const FILE_BYTES = 32 * MiB;
const ROUNDS = 3;

let agent: AgentProcess;
let client: GuestClient;
let work: string;

beforeAll(async () => {
  agent = await startAgent();
  client = createGuestClient(`unix:${agent.socketPath}`);
  work = await mkdtemp(join(tmpdir(), "guestkit-simultaneous-"));
});

afterAll(async () => {
  await client.close();
  await agent.stop();
  await rm(work, { recursive: true, force: true });
});

it(`two ${FILE_BYTES / MiB} MiB uploads and two downloads at once on one connection, ${ROUNDS} rounds`, async () => {
  const up = Buffer.alloc(FILE_BYTES, 0x55);
  const down = Buffer.alloc(FILE_BYTES, 0xaa);
  await writeFile(join(work, "up"), up);
  // The agent's side of the downloads: it runs on this machine, so a local file will do.
  await writeFile(join(work, "down"), down);
  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all([
      client.copyTo(join(work, "up"), join(work, `up-${round}-a`)),
      client.copyTo(join(work, "up"), join(work, `up-${round}-b`)),
      client.copyFrom(join(work, "down"), join(work, `down-${round}-a`)),
      client.copyFrom(join(work, "down"), join(work, `down-${round}-b`)),
    ]);
    for (const name of ["a", "b"]) {
      expect((await readFile(join(work, `up-${round}-${name}`))).equals(up)).toBe(true);
      expect((await readFile(join(work, `down-${round}-${name}`))).equals(down)).toBe(true);
    }
    await Promise.all(
      ["a", "b"].flatMap((name) => [`up-${round}-${name}`, `down-${round}-${name}`].map((f) => rm(join(work, f)))),
    );
  }
}, 120_000);
