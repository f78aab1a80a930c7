// Uploads and downloads at the same time on one client's shared connection. HTTP/2
// flow control is per stream and per connection; a connection window that stops being
// replenished stalls every call on the connection at once, until keepalive gives up on
// it. Twenty workers each run copyTo then copyFrom of the same file, over and over, for
// a bounded time: every round trip must come back intact and none may stall. The host
// also resets the stream of most copy-froms (it cancels once the final `end` is in), over
// a hundred a second here: the agent must not take that for an attack and close the
// connection (it did, after about 2,660 round trips: see stream-resets.test.ts).
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGuestClient, type GuestClient } from "@guestkit/host";
import { type AgentProcess, startAgent } from "@guestkit/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";

const WORKERS = 20;
const DURATION_MS = 10_000;
// A round trip of at most 512 KiB takes well under a second here even under this load
// (measured: slowest about 0.6 s); a stalled connection takes the keepalive's 15 s.
const STALL_MS = 5000;

let agent: AgentProcess;
let client: GuestClient;
let work: string;

beforeAll(async () => {
  agent = await startAgent();
  client = createGuestClient(`unix:${agent.socketPath}`);
  work = await mkdtemp(join(tmpdir(), "guestkit-concurrent-copies-"));
});

afterAll(async () => {
  await client.close();
  await agent.stop();
  await rm(work, { recursive: true, force: true });
});

it(`${WORKERS} workers round-tripping files on one connection: nothing stalls, nothing is lost`, async () => {
  const deadline = Date.now() + DURATION_MS;
  let next = 0;
  let done = 0;
  let slowest = 0;
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (Date.now() < deadline && failures.length === 0) {
        const id = next++;
        const data = Buffer.alloc(id % 4 === 0 ? 512 * 1024 : 4096, id % 256);
        const local = join(work, `up-${id}`);
        const back = join(work, `down-${id}`);
        await writeFile(local, data);
        const started = Date.now();
        try {
          await client.copyTo(local, join(work, `guest-${id}`));
          await client.copyFrom(join(work, `guest-${id}`), back);
          if (!(await readFile(back)).equals(data)) failures.push(`round trip ${id} changed the file`);
        } catch (error) {
          failures.push(`round trip ${id}: ${(error as Error).message}`);
        }
        slowest = Math.max(slowest, Date.now() - started);
        done += 1;
        await Promise.all([local, back, join(work, `guest-${id}`)].map((path) => rm(path, { force: true })));
      }
    }),
  );
  process.stdout.write(`concurrent copies: ${done} round trips in ${DURATION_MS / 1000} s, slowest ${slowest} ms\n`);
  expect(failures.slice(0, 3)).toEqual([]);
  expect(slowest).toBeLessThan(STALL_MS);
  expect(done).toBeGreaterThan(WORKERS * 5);
}, 60_000);
