// Hundreds of calls that stall on one connection: downloads whose reader stopped reading,
// and commands that never read the stdin sent to them. The agent must hold a bounded
// amount per stream whatever the window the client granted (read from /proc/PID/status
// VmRSS), and still answer a unary call on the same connection at once, and still deliver
// a signal to a command whose stdin is full.
import { mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { type ClientHttp2Session, type ClientHttp2Stream, connect as connectHttp2 } from "node:http2";
import { connect as connectUnix } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGuestClient, type ExecHandle, type GuestClient } from "@guestkit/host";
import { type AgentProcess, encodeRequest, GUEST_METHODS, grpcFrame, rssBytesOf, startAgent } from "@guestkit/testkit";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import {
  CALL_PRIORITY,
  CHUNK_SIZE,
  EXEC_STDIN_WINDOW_BYTES,
  HOST_HTTP2_WINDOW_BYTES,
} from "../../packages/protocol/src/index.js";
import { waitFor } from "./support.js";

const MiB = 1024 * 1024;
const STALLED_DOWNLOADS = 200;
const UNREAD_STDIN_STREAMS = 100;
const STDIN_PER_STREAM = 32 * MiB;
// What one stalled stream may cost the agent beyond its data: the call's bookkeeping in
// grpc-js and node:http2, a command's pipes, and malloc's slack. Measured: 0.6-0.7 MiB of
// RSS per stalled download (512 KiB of it data), 0.9 MiB per unread stdin stream (up to
// 768 KiB of it queued stdin).
const PER_STREAM_OVERHEAD = 512 * 1024;
// V8 and malloc growing under the load itself, independent of the number of streams.
const FIXED_SLACK = 64 * MiB;

let agent: AgentProcess;
let work: string;
const sessions: ClientHttp2Session[] = [];
const clients: GuestClient[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-stalled-"));
});

afterEach(async () => {
  for (const session of sessions.splice(0)) session.destroy();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await agent?.stop();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A connection as the host library opens it: its window, its priority on every call. */
async function openSession(socketPath: string): Promise<ClientHttp2Session> {
  const session = connectHttp2("http://agent", {
    createConnection: () => connectUnix(socketPath),
    settings: { initialWindowSize: HOST_HTTP2_WINDOW_BYTES },
  });
  sessions.push(session);
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  session.setLocalWindowSize(HOST_HTTP2_WINDOW_BYTES);
  return session;
}

function request(session: ClientHttp2Session, path: string, body: Uint8Array): ClientHttp2Stream {
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
    priority: CALL_PRIORITY,
  });
  stream.on("error", () => {});
  stream.end(grpcFrame(body));
  return stream;
}

/** A StatPath on `session`; resolves with how long it took to be answered. */
async function timedStatPath(session: ClientHttp2Session): Promise<number> {
  const started = performance.now();
  const stream = request(session, GUEST_METHODS.statPath.path, encodeRequest("statPath", { path: "/tmp" }));
  let status: string | undefined;
  stream.on("trailers", (trailers) => {
    status = String(trailers["grpc-status"]);
  });
  stream.on("data", () => {});
  await new Promise<void>((resolve) => stream.once("close", () => resolve()));
  expect(status).toBe("0");
  return performance.now() - started;
}

/** Waits until the agent's RSS stops growing, and returns it. */
async function settledRss(pid: number): Promise<number> {
  let last = rssBytesOf(pid);
  let steady = 0;
  for (let i = 0; i < 100 && steady < 4; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = rssBytesOf(pid);
    steady = Math.abs(now - last) < 2 * MiB ? steady + 1 : 0;
    last = now;
  }
  return last;
}

it(`${STALLED_DOWNLOADS} downloads whose reader stopped: bounded agent memory, and a StatPath on the same connection answers within 1 s`, async () => {
  agent = await startAgent();
  const file = join(work, "big");
  await writeFile(file, "");
  await truncate(file, 64 * MiB);
  const session = await openSession(agent.socketPath);
  await timedStatPath(session);
  const before = rssBytesOf(agent.pid);
  let begun = 0;
  for (let i = 0; i < STALLED_DOWNLOADS; i++) {
    const stream = request(session, GUEST_METHODS.copyFromGuest.path, encodeRequest("copyFromGuest", { path: file }));
    // The reader stops at the first bytes: from then on only HTTP/2 flow control moves.
    stream.once("data", () => {
      begun += 1;
      stream.pause();
    });
  }
  await waitFor("every download to begin", () => begun === STALLED_DOWNLOADS, 60_000);
  const statMs = await timedStatPath(session);
  const growth = (await settledRss(agent.pid)) - before;
  // Per stream: the message HTTP/2 is sending and the next one, prepared (stream-writer.ts).
  const bound = STALLED_DOWNLOADS * (2 * CHUNK_SIZE + PER_STREAM_OVERHEAD) + FIXED_SLACK;
  process.stdout.write(
    `stalled downloads: ${STALLED_DOWNLOADS}, agent RSS +${(growth / MiB).toFixed(0)} MiB (bound ${(bound / MiB).toFixed(0)}), StatPath ${statMs.toFixed(0)} ms\n`,
  );
  expect(growth).toBeLessThan(bound);
  expect(statMs).toBeLessThan(1000);
  expect(await timedStatPath(session)).toBeLessThan(1000);
}, 120_000);

it(`${UNREAD_STDIN_STREAMS} commands that never read their stdin: bounded agent memory, and kill("KILL") still arrives within 1 s`, async () => {
  agent = await startAgent();
  const client = createGuestClient(`unix:${agent.socketPath}`);
  clients.push(client);
  await client.run(["true"]);
  const before = rssBytesOf(agent.pid);
  const execs: ExecHandle[] = [];
  // The same buffer every time: the host's memory is not what this measures.
  const chunk = Buffer.alloc(MiB, 0x61);
  for (let i = 0; i < UNREAD_STDIN_STREAMS; i++) {
    const exec = client.exec(["sleep", "1000"], { stdin: true });
    const stdin = exec.stdin as NonNullable<ExecHandle["stdin"]>;
    for (let offset = 0; offset < STDIN_PER_STREAM; offset += chunk.length) stdin.write(chunk);
    execs.push(exec);
  }
  await Promise.all(execs.map((exec) => exec.started));
  const growth = (await settledRss(agent.pid)) - before;
  // Per stream: the stdin the host may have in flight and one more message (exec-stdin.ts).
  const bound = UNREAD_STDIN_STREAMS * (EXEC_STDIN_WINDOW_BYTES + CHUNK_SIZE + PER_STREAM_OVERHEAD) + FIXED_SLACK;
  const [first, ...rest] = execs as [ExecHandle, ...ExecHandle[]];
  const started = performance.now();
  first.kill("KILL");
  const exit = await Promise.race([
    first.exit,
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5000)),
  ]);
  const killMs = performance.now() - started;
  process.stdout.write(
    `unread stdin: ${UNREAD_STDIN_STREAMS} x ${STDIN_PER_STREAM / MiB} MiB, agent RSS +${(growth / MiB).toFixed(0)} MiB (bound ${(bound / MiB).toFixed(0)}), kill ${killMs.toFixed(0)} ms\n`,
  );
  expect(growth).toBeLessThan(bound);
  expect(exit).toMatchObject({ code: 137, signal: "SIGKILL" });
  expect(killMs).toBeLessThan(1000);
  for (const exec of rest) exec.kill("KILL");
  await Promise.all(rest.map((exec) => exec.exit));
}, 120_000);
