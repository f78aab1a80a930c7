// A command that floods stdout and stderr (1 GiB in CI; GUESTKIT_FLOOD_MIB for more) to
// a client that reads slowly and stalls: the agent's memory must stay bounded (sampled
// from /proc/PID/status VmRSS all along), and every byte must arrive, in order, on the
// stream it was written to. Each stream is a repeating line, so each chunk's position in
// it is known and its bytes are compared exactly.
import { createGuestClient, type GuestClient } from "@guestkit/host";
import { type AgentProcess, rssBytesOf, sampleRss, startAgent } from "@guestkit/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sleep } from "./support.js";

const MiB = 1024 * 1024;
const TOTAL_MIB = Number(process.env.GUESTKIT_FLOOD_MIB ?? 1024);
// Three quarters on stdout, a quarter on stderr, written at the same time.
const STDOUT_BYTES = Math.floor((TOTAL_MIB * MiB * 3) / 4);
const STDERR_BYTES = TOTAL_MIB * MiB - STDOUT_BYTES;
// 61 bytes: not a divisor of any chunk size, so a lost or repeated chunk shifts the phase.
const OUT_LINE = "out 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU";
const ERR_LINE = "err 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU";
// How much the agent may grow while 1 GiB or more goes through it. Measured: 70 to 105
// MiB (HTTP/2 windows of 8 MiB per stream and per connection, pipe buffers, V8's young
// generation under a steady allocation rate), the same for 1 GiB as for 4 GiB.
const AGENT_GROWTH_LIMIT = 160 * MiB;
const HOST_GROWTH_LIMIT = 160 * MiB;

let agent: AgentProcess;
let client: GuestClient;

beforeAll(async () => {
  agent = await startAgent();
  client = createGuestClient(`unix:${agent.socketPath}`);
  await client.run(["true"]);
});

afterAll(async () => {
  await client.close();
  await agent.stop();
});

/** Checks that chunks continue a stream made of `line\n` repeated, exactly. */
class RepeatingLineChecker {
  readonly #pattern: Buffer;
  readonly #period: number;
  bytes = 0;
  mismatchAt: number | undefined;

  constructor(line: string) {
    const unit = Buffer.from(`${line}\n`);
    this.#period = unit.length;
    // Long enough to compare the largest message against at any phase.
    this.#pattern = Buffer.alloc(2 * MiB + unit.length);
    for (let offset = 0; offset < this.#pattern.length; offset += unit.length) unit.copy(this.#pattern, offset);
  }

  add(chunk: Uint8Array): void {
    let done = 0;
    while (done < chunk.length && this.mismatchAt === undefined) {
      const phase = (this.bytes + done) % this.#period;
      const length = Math.min(chunk.length - done, this.#pattern.length - phase);
      const expected = this.#pattern.subarray(phase, phase + length);
      if (Buffer.compare(Buffer.from(chunk.buffer, chunk.byteOffset + done, length), expected) !== 0) {
        this.mismatchAt = this.bytes + done;
      }
      done += length;
    }
    this.bytes += chunk.length;
  }
}

it(`${TOTAL_MIB} MiB of output to a slow, stalling reader: agent memory bounded, nothing lost`, async () => {
  const agentRss = sampleRss(agent.pid);
  const hostRss = sampleRss(process.pid);
  const hostBase = process.memoryUsage().rss;
  const agentBase = rssBytesOf(agent.pid);
  const started = Date.now();
  const exec = client.exec([
    "sh",
    "-c",
    `yes '${OUT_LINE}' | head -c ${STDOUT_BYTES} & yes '${ERR_LINE}' | head -c ${STDERR_BYTES} >&2; wait`,
  ]);
  const out = new RepeatingLineChecker(OUT_LINE);
  const err = new RepeatingLineChecker(ERR_LINE);
  // Slow: a pause every 64 MiB. Stalling: nothing read at all for 2 s after the first
  // chunk and at the middle, while the command keeps writing as fast as it can. (The
  // reader is attached throughout: a handle nobody iterates drops output on purpose.)
  let nextPause = 64 * MiB;
  let stalledStart = false;
  let stalledMiddle = false;
  for await (const { stream, data } of exec) {
    (stream === "stdout" ? out : err).add(data);
    const total = out.bytes + err.bytes;
    if (!stalledStart) {
      stalledStart = true;
      await sleep(2000);
    }
    if (total >= nextPause) {
      nextPause += 64 * MiB;
      await sleep(100);
    }
    if (!stalledMiddle && total >= (TOTAL_MIB * MiB) / 2) {
      stalledMiddle = true;
      await sleep(2000);
    }
  }
  const exit = await exec.exit;
  const agentPeak = agentRss.stop().peakBytes;
  const hostPeak = hostRss.stop().peakBytes;
  const seconds = (Date.now() - started) / 1000;
  process.stdout.write(
    `flood: ${TOTAL_MIB} MiB in ${seconds.toFixed(1)} s; agent RSS ${(agentBase / MiB).toFixed(0)} -> peak ${(agentPeak / MiB).toFixed(0)} MiB; host RSS ${(hostBase / MiB).toFixed(0)} -> peak ${(hostPeak / MiB).toFixed(0)} MiB\n`,
  );

  expect(exit).toMatchObject({ code: 0, truncated: false });
  expect(exec.droppedBytes).toBe(0);
  expect(out.mismatchAt).toBeUndefined();
  expect(err.mismatchAt).toBeUndefined();
  expect(out.bytes).toBe(STDOUT_BYTES);
  expect(err.bytes).toBe(STDERR_BYTES);
  expect(agentPeak - agentBase).toBeLessThan(AGENT_GROWTH_LIMIT);
  expect(hostPeak - hostBase).toBeLessThan(HOST_GROWTH_LIMIT);
}, 180_000);
