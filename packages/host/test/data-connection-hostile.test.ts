// Data connections against a guest that attacks the host (data-connection-fake.ts): what
// comes back on a data connection is as untrusted as what comes on the call. Oversized
// frames, lying sizes, streams cut short, unsafe names and silent connections must fail
// the copy with a CopyError, promptly, with nothing left at the destination and nothing
// written outside it; a flood must not grow the host's memory; a guest that gives up on
// an upload must be heard; a malformed ticket must never be dialed; and an agent that
// did not announce the capability is never asked.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  Capability,
  CHUNK_SIZE,
  type CopyFromGuestResponseSchema,
  type CopyToGuestRequest,
  CopyToGuestRequestSchema,
  DATA_CONNECTION_REQUEST_KEY,
  DATA_CONNECTION_TICKET_KEY,
  ExecResponseSchema,
  ForwardPortResponseSchema,
  MAX_MESSAGE_BYTES,
  readFrames,
} from "@guestkit/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CopyError } from "../src/copy/copy-error.js";
import { createGuestClient, type GuestClient } from "../src/guest-client.js";
import { GuestError } from "../src/guest-error.js";
import {
  type CopyFromCall,
  type CopyToCall,
  DATA_CAPABILITIES,
  type DataConnectionFake,
  END_FRAME,
  type ExecCall,
  type FakeScript,
  type ForwardCall,
  frame,
  fromFrame,
  IN_BAND_CAPABILITIES,
  sendInBand,
  startDataConnectionFake,
  writeRaw,
} from "./data-connection-fake.js";

const MiB = 1024 * 1024;
type Message = MessageInitShape<typeof CopyFromGuestResponseSchema>;

const header = (path: string, size: number): Message => ({
  response: { case: "header", value: { path, size: BigInt(size), mode: 0o644, mtime: 1_700_000_000n } },
});
const data = (bytes: Uint8Array): Message => ({ response: { case: "data", value: bytes } });
const end = (final = false): Message => ({ response: { case: "end", value: { final } } });

let work: string;
let dest: string;
let fake: DataConnectionFake | undefined;
let client: GuestClient | undefined;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-data-hostile-"));
  dest = join(work, "dest");
  await mkdir(dest);
});

afterEach(async () => {
  await client?.close();
  client = undefined;
  await fake?.close();
  fake = undefined;
  await rm(work, { recursive: true, force: true });
});

async function connect(script: FakeScript): Promise<GuestClient> {
  fake = await startDataConnectionFake(script);
  client = createGuestClient({ kind: "unix", path: fake.socketPath });
  return client;
}

/** The copy's rejection (it must reject), and how long it took. */
async function rejection(copy: Promise<unknown>): Promise<{ error: CopyError; ms: number }> {
  const started = Date.now();
  const error = await copy.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error, "the copy must fail").toBeInstanceOf(CopyError);
  return { error: error as CopyError, ms: Date.now() - started };
}

/** Nothing landed: the destination is empty (no file, no temp file) and nothing is beside it. */
async function expectNothingLeft(): Promise<void> {
  expect(await readdir(dest)).toEqual([]);
  expect((await readdir(work)).sort()).toEqual(["dest"]);
}

/** A copyFromGuest handler that takes a data connection and runs `attack` on it. */
function onDataConnection(attack: (socket: Socket, call: CopyFromCall) => Promise<void>): FakeScript {
  return {
    copyFromGuest: async (call, tools) => {
      const socket = await tools.offer(call);
      await attack(socket, call);
    },
  };
}

/** Writes the frames of `messages`, then the end frame unless `endFrame` is false. */
async function sendFrames(socket: Socket, messages: Message[], endFrame = true): Promise<void> {
  for (const message of messages) await writeRaw(socket, fromFrame(message));
  if (endFrame) await writeRaw(socket, END_FRAME);
}

describe("copyFrom over a data connection from a hostile guest", { timeout: 15_000 }, () => {
  it("control: a well-behaved guest's file arrives whole over the data connection, which the host asked for", async () => {
    const content = randomBytes(3 * MiB + 5);
    const guest = await connect(
      onDataConnection(async (socket, call) => {
        const messages = [header("root", content.length)];
        for (let at = 0; at < content.length; at += CHUNK_SIZE)
          messages.push(data(content.subarray(at, at + CHUNK_SIZE)));
        await sendFrames(socket, [...messages, end(), end(true)]);
        call.end();
      }),
    );
    const result = await guest.copyFrom("/srv/root", dest);
    expect(result).toMatchObject({ entries: 1, bytes: content.length });
    expect((await readFile(join(dest, "root"))).equals(content)).toBe(true);
    expect(fake?.dataConnections).toBe(1);
    const asked = fake?.calls.find((call) => call.method === "copyFromGuest");
    expect(asked?.metadata.get(DATA_CONNECTION_REQUEST_KEY)).toEqual(["1"]);
  });

  it("a frame longer than MAX_MESSAGE_BYTES fails the copy at once, without the host buffering it", async () => {
    const junk = Buffer.alloc(MiB, 0x61);
    let sent = 0;
    const guest = await connect(
      onDataConnection(async (socket) => {
        const length = Buffer.alloc(4);
        length.writeUInt32BE(0xffff_fff0);
        await writeRaw(socket, length);
        // Then as much as the host will take of the 4 GiB it was promised.
        while (sent < 256 * MiB && (await writeRaw(socket, junk))) sent += junk.length;
      }),
    );
    await guest.stat("/").catch(() => undefined);
    const before = process.memoryUsage();
    const { error, ms } = await rejection(guest.copyFrom("/srv/root", dest));
    const after = process.memoryUsage();
    expect(error.message).toMatch(/frame of 4294967280 bytes/);
    expect(error.message).toContain(`at most ${MAX_MESSAGE_BYTES}`);
    expect(error.reason).toBe("protocol");
    expect(ms).toBeLessThan(2000);
    // Neither the frame nor the junk behind it was held.
    expect(sent).toBeLessThan(64 * MiB);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(MAX_MESSAGE_BYTES);
    await expectNothingLeft();
  });

  it("a header for 10 bytes followed by 20 is a size mismatch: no file, no temp file", async () => {
    const guest = await connect(
      onDataConnection(async (socket, call) => {
        await sendFrames(socket, [header("root", 10), data(Buffer.alloc(20, 0x62)), end(), end(true)]);
        call.end();
      }),
    );
    const { error, ms } = await rejection(guest.copyFrom("/srv/root", dest));
    expect(error.reason).toBe("size-mismatch");
    expect(ms).toBeLessThan(5000);
    await expectNothingLeft();
  });

  it("a stream cut short (no end frame) fails the copy and leaves nothing at the destination", async () => {
    const guest = await connect(
      onDataConnection(async (socket, call) => {
        await sendFrames(socket, [header("root", 1000), data(Buffer.alloc(500, 0x63))], false);
        socket.end();
        // The call itself says all is well: the lost data connection must still count.
        setTimeout(() => call.end(), 200);
      }),
    );
    const { error, ms } = await rejection(guest.copyFrom("/srv/root", dest));
    expect(error.reason, error.message).toBe("connection-lost");
    expect(ms).toBeLessThan(5000);
    await expectNothingLeft();
  });

  it("a connection closed in the middle of a frame fails the copy and leaves nothing at the destination", async () => {
    const guest = await connect(
      onDataConnection(async (socket) => {
        await sendFrames(socket, [header("root", 1000), data(Buffer.alloc(500, 0x63))], false);
        // Half a frame, then the connection is gone (the call stays open).
        const next = fromFrame(data(Buffer.alloc(500, 0x64)));
        await writeRaw(socket, next.subarray(0, 100));
        setTimeout(() => socket.destroy(), 50);
      }),
    );
    const { error, ms } = await rejection(guest.copyFrom("/srv/root", dest));
    expect(error.reason, error.message).toBe("connection-lost");
    expect(ms).toBeLessThan(5000);
    await expectNothingLeft();
  });

  it("a complete entry and the end frame, but no final `end`, is an incomplete transfer, and says so", async () => {
    const guest = await connect(
      onDataConnection(async (socket, call) => {
        await sendFrames(socket, [header("root", 4), data(Buffer.from("abcd")), end()]);
        call.end();
      }),
    );
    const { error, ms } = await rejection(guest.copyFrom("/srv/root", dest));
    expect(error.reason).toBe("protocol");
    expect(error.message).toMatch(/without the final `end`: the transfer is incomplete/);
    // As in-band: an entry completed before the failure stays, and the error counts it.
    expect(error.entriesCompleted).toBe(1);
    expect(error.message).toMatch(/1 entries completed before the failure were left in place/);
    expect(await readFile(join(dest, "root"), "utf8")).toBe("abcd");
    expect(ms).toBeLessThan(5000);
  });

  it("an unsafe path (`../escape`) is refused and nothing is written outside the destination", async () => {
    const guest = await connect(
      onDataConnection(async (socket, call) => {
        await sendFrames(socket, [header("../escape", 4), data(Buffer.from("evil")), end(), end(true)]);
        call.end();
      }),
    );
    const { error } = await rejection(guest.copyFrom("/srv/root", dest));
    expect(error.reason).toBe("unsafe-entry");
    await expectNothingLeft();
  });

  it("a data connection that closes at once while the call ends OK is a failure, not an empty success", async () => {
    const guest = await connect(
      onDataConnection(async (socket, call) => {
        socket.end();
        call.end();
      }),
    );
    const { error, ms } = await rejection(guest.copyFrom("/srv/root", dest));
    expect(error.reason, error.message).toBe("connection-lost");
    expect(ms).toBeLessThan(5000);
    await expectNothingLeft();
  });

  it("a data connection that stays silent while the call ends OK fails the copy, and does not hang", async () => {
    const guest = await connect(
      onDataConnection(async (_socket, call) => {
        // The socket stays open and says nothing; the call claims success.
        call.end();
      }),
    );
    const copy = guest.copyFrom("/srv/root", dest, { signal: AbortSignal.timeout(6000) });
    const { error, ms } = await rejection(copy);
    // A timeout here would mean the host waited on the silent connection after the call ended.
    expect(error.reason, `${error.message} after ${ms} ms`).not.toBe("deadline");
    expect(error.reason, error.message).toBe("connection-lost");
    await expectNothingLeft();
  }, 10_000);
});

const FLOOD_BYTES = 256 * MiB;

describe("a flood on the data connection", { timeout: 15_000 }, () => {
  it("keeps the host's memory bounded while it writes to disk, and an abort leaves no partial file", async () => {
    const chunk = fromFrame(data(Buffer.alloc(CHUNK_SIZE, 0x66)));
    let sent = 0;
    const guest = await connect(
      onDataConnection(async (socket) => {
        await sendFrames(socket, [header("root", 1024 * MiB)], false);
        // As fast as the host takes it, never the end.
        while (await writeRaw(socket, chunk)) sent += CHUNK_SIZE;
      }),
    );
    await guest.stat("/").catch(() => undefined);
    const controller = new AbortController();
    let received = 0;
    const baseline = process.memoryUsage();
    const copy = rejection(
      guest.copyFrom("/srv/root", dest, {
        signal: controller.signal,
        onProgress: ({ bytes }) => {
          received = bytes;
        },
      }),
    );
    let peakRss = baseline.rss;
    let peakBuffers = baseline.arrayBuffers;
    const started = Date.now();
    // Until a quarter of the promised GiB is in (or 6 s on a slow machine): enough that
    // memory which grew with what arrived would stand far above the bound below.
    while (Date.now() - started < 6000 && received < FLOOD_BYTES) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const now = process.memoryUsage();
      peakRss = Math.max(peakRss, now.rss);
      peakBuffers = Math.max(peakBuffers, now.arrayBuffers);
    }
    expect(received, "the transfer must be under way").toBeGreaterThan(64 * MiB);
    controller.abort();
    const { error, ms } = await copy;
    expect(error.reason).toBe("cancelled");
    expect(ms).toBeLessThan(4000);
    // What the host holds is bounded, not what it has thrown away: V8 collects the
    // buffers of socket reads once about 64 MiB of them have piled up since the last
    // collection, so peaks of 60 to 90 MiB of garbage are normal at full speed (this
    // process plays the guest too). A host that kept what arrived would be past 256 MiB.
    const figures = `${received / MiB} MiB received; peak RSS +${(peakRss - baseline.rss) / MiB} MiB, buffers +${(peakBuffers - baseline.arrayBuffers) / MiB} MiB`;
    expect((peakRss - baseline.rss) / MiB, figures).toBeLessThan(128);
    expect((peakBuffers - baseline.arrayBuffers) / MiB, figures).toBeLessThan(128);
    expect(sent - received, "the host reads only as fast as it writes").toBeLessThan(64 * MiB);
    await expectNothingLeft();
  }, 15_000);
});

/** A fake guest file system: `/guest` is a directory, nothing is in it. */
const guestFs: Pick<FakeScript, "statPath"> = {
  statPath: ({ path }) => (path === "/guest" ? { exists: true, isDir: true, mode: 0o755 } : { exists: false }),
};

/** What an in-band copyToGuest call carries, until the host half-closes it. */
function readInBand(call: CopyToCall): Promise<CopyToGuestRequest[]> {
  return new Promise((resolve, reject) => {
    const requests: CopyToGuestRequest[] = [];
    call.on("data", (request: CopyToGuestRequest) => requests.push(request));
    call.once("end", () => resolve(requests));
    call.once("error", reject);
  });
}

/** Bytes of data in `requests`, and the entries they end. */
function tally(requests: Iterable<CopyToGuestRequest>): { bytes: number; entries: number } {
  let bytes = 0;
  let entries = 0;
  for (const { request } of requests) {
    if (request.case === "data") bytes += request.value.byteLength;
    if (request.case === "end") entries += 1;
  }
  return { bytes, entries };
}

describe("copyTo over a data connection to a hostile guest", { timeout: 15_000 }, () => {
  async function bigFile(): Promise<{ path: string; content: Buffer }> {
    const content = randomBytes(3 * MiB);
    const path = join(work, "big");
    await writeFile(path, content);
    return { path, content };
  }

  it("control: a well-behaved guest receives the file whole on the data connection", async () => {
    const { path, content } = await bigFile();
    const received: Buffer[] = [];
    const guest = await connect({
      ...guestFs,
      copyToGuest: async (_call, answer, tools) => {
        const socket = await tools.offer(_call);
        const requests: CopyToGuestRequest[] = [];
        for await (const request of readFrames(socket, CopyToGuestRequestSchema)) {
          requests.push(request);
          if (request.request.case === "data") received.push(Buffer.from(request.request.value));
        }
        const { bytes, entries } = tally(requests);
        answer({ success: true, bytesWritten: BigInt(bytes), entriesWritten: BigInt(entries) });
      },
    });
    expect(await guest.copyTo(path, "/guest/up")).toMatchObject({ entries: 1, bytes: content.length });
    expect(Buffer.concat(received).equals(content)).toBe(true);
    expect(fake?.dataConnections).toBe(1);
  });

  it("the host does not half-close the data connection after its end frame (a VMM would cut what the guest has not read)", async () => {
    const { path } = await bigFile();
    let halfClosedBeforeAnswer: boolean | undefined;
    const guest = await connect({
      ...guestFs,
      copyToGuest: async (call, answer, tools) => {
        const socket = await tools.offer(call);
        let ended = false;
        socket.once("end", () => {
          ended = true;
        });
        const requests: CopyToGuestRequest[] = [];
        for await (const request of readFrames(socket, CopyToGuestRequestSchema)) requests.push(request);
        // A guest slow to take the last bytes: the host must still be holding the connection open.
        socket.resume();
        await new Promise((resolve) => setTimeout(resolve, 300));
        halfClosedBeforeAnswer = ended;
        const { bytes, entries } = tally(requests);
        answer({ success: true, bytesWritten: BigInt(bytes), entriesWritten: BigInt(entries) });
      },
    });
    await guest.copyTo(path, "/guest/up");
    expect(halfClosedBeforeAnswer).toBe(false);
  });

  it("a guest that fails part-way and closes the data connection is heard: guest-failed with its words", async () => {
    const { path } = await bigFile();
    const guest = await connect({
      ...guestFs,
      copyToGuest: async (call, answer, tools) => {
        const socket = await tools.offer(call);
        await readSomeFrames(socket, 3);
        answer({ success: false, error: "the guest disk caught fire", errorPath: "/guest/up" });
        socket.destroy();
      },
    });
    const { error, ms } = await rejection(guest.copyTo(path, "/guest/up"));
    expect(error.reason).toBe("guest-failed");
    expect(error.message).toContain("the guest disk caught fire");
    expect(ms).toBeLessThan(5000);
  });

  it("a guest that closes the data connection first and answers a moment later is still heard", async () => {
    const { path } = await bigFile();
    const guest = await connect({
      ...guestFs,
      copyToGuest: async (call, answer, tools) => {
        const socket = await tools.offer(call);
        await readSomeFrames(socket, 3);
        socket.destroy();
        setTimeout(() => answer({ success: false, error: "no space for you", errorPath: "/guest/up" }), 300);
      },
    });
    const { error, ms } = await rejection(guest.copyTo(path, "/guest/up"));
    expect(error.reason).toBe("guest-failed");
    expect(error.message).toContain("no space for you");
    expect(ms).toBeLessThan(5000);
  });

  it("a guest that closes the data connection and never answers fails the copy promptly (connection-lost)", async () => {
    const { path } = await bigFile();
    const guest = await connect({
      ...guestFs,
      copyToGuest: async (call, _answer, tools) => {
        const socket = await tools.offer(call);
        await readSomeFrames(socket, 3);
        socket.destroy();
        // ...and the call is left open, with no answer.
      },
    });
    const { error, ms } = await rejection(guest.copyTo(path, "/guest/up"));
    expect(error.reason).toBe("connection-lost");
    expect(ms).toBeLessThan(8000);
  }, 12_000);

  it("a guest that claims success before it has the whole file is not believed", async () => {
    const { path, content } = await bigFile();
    const guest = await connect({
      ...guestFs,
      copyToGuest: async (call, answer, tools) => {
        const socket = await tools.offer(call);
        await readSomeFrames(socket, 3);
        answer({ success: true, entriesWritten: 1n, bytesWritten: BigInt(content.length) });
        socket.destroy();
      },
    });
    const { error, ms } = await rejection(guest.copyTo(path, "/guest/up"));
    expect(error.reason).toBe("protocol");
    expect(ms).toBeLessThan(5000);
  });
});

// Values a guest might put where the ticket goes; none is 64 lowercase hex digits.
const BAD_TICKETS: readonly string[] = [
  "",
  "abc",
  "a".repeat(63),
  "a".repeat(65),
  "A".repeat(64),
  "g".repeat(64),
  `${"0".repeat(32)} ${"0".repeat(31)}`,
  `/${"0".repeat(63)}`,
];

describe("a malformed ticket", { timeout: 15_000 }, () => {
  it.each(BAD_TICKETS.map((ticket) => [JSON.stringify(ticket), ticket]))(
    "%s: copyFrom stays on the call and never dials",
    async (_name, ticket) => {
      const guest = await connect({
        copyFromGuest: async (call) => {
          const headers = new grpc.Metadata();
          headers.set(DATA_CONNECTION_TICKET_KEY, ticket);
          call.sendMetadata(headers);
          for (const message of [header("root", 5), data(Buffer.from("hello")), end(), end(true)]) {
            if (!(await sendInBand(call, message))) return;
          }
          call.end();
        },
      });
      expect(await guest.copyFrom("/srv/root", dest)).toMatchObject({ entries: 1, bytes: 5 });
      expect(await readFile(join(dest, "root"), "utf8")).toBe("hello");
      expect(fake?.dataConnections).toBe(0);
    },
  );

  it("copyTo stays on the call and never dials", async () => {
    const content = randomBytes(2 * MiB);
    await writeFile(join(work, "big"), content);
    let received = Buffer.alloc(0);
    const guest = await connect({
      ...guestFs,
      copyToGuest: async (call, answer) => {
        const headers = new grpc.Metadata();
        headers.set(DATA_CONNECTION_TICKET_KEY, "f".repeat(63));
        call.sendMetadata(headers);
        const requests = await readInBand(call);
        received = Buffer.concat(requests.flatMap(({ request }) => (request.case === "data" ? [request.value] : [])));
        const { bytes, entries } = tally(requests);
        answer({ success: true, bytesWritten: BigInt(bytes), entriesWritten: BigInt(entries) });
      },
    });
    expect(await guest.copyTo(join(work, "big"), "/guest/up")).toMatchObject({ entries: 1, bytes: content.length });
    expect(received.equals(content)).toBe(true);
    expect(fake?.dataConnections).toBe(0);
    expect(
      fake?.calls.find((call) => call.method === "copyToGuest")?.metadata.get(DATA_CONNECTION_REQUEST_KEY),
    ).toEqual(["1"]);
  });
});

describe("an agent without the capability", { timeout: 15_000 }, () => {
  it("is never asked for a data connection, and both copies work in-band", async () => {
    const down = randomBytes(2 * MiB + 3);
    const up = randomBytes(2 * MiB + 7);
    await writeFile(join(work, "up"), up);
    let received = Buffer.alloc(0);
    const guest = await connect({
      ...guestFs,
      capabilities: IN_BAND_CAPABILITIES,
      copyFromGuest: async (call) => {
        const messages = [header("root", down.length)];
        for (let at = 0; at < down.length; at += CHUNK_SIZE) messages.push(data(down.subarray(at, at + CHUNK_SIZE)));
        for (const message of [...messages, end(), end(true)]) if (!(await sendInBand(call, message))) return;
        call.end();
      },
      copyToGuest: async (call, answer) => {
        const requests = await readInBand(call);
        received = Buffer.concat(requests.flatMap(({ request }) => (request.case === "data" ? [request.value] : [])));
        const { bytes, entries } = tally(requests);
        answer({ success: true, bytesWritten: BigInt(bytes), entriesWritten: BigInt(entries) });
      },
    });
    expect(await guest.copyFrom("/srv/root", dest)).toMatchObject({ entries: 1, bytes: down.length });
    expect((await readFile(join(dest, "root"))).equals(down)).toBe(true);
    expect(await guest.copyTo(join(work, "up"), "/guest/up")).toMatchObject({ entries: 1, bytes: up.length });
    expect(received.equals(up)).toBe(true);
    const copies = fake?.calls.filter((call) => call.method.startsWith("copy")) ?? [];
    expect(copies.map((call) => call.method)).toEqual(["copyFromGuest", "copyToGuest"]);
    for (const call of copies) expect(call.metadata.get(DATA_CONNECTION_REQUEST_KEY)).toEqual([]);
    expect(fake?.dataConnections).toBe(0);
  });
});

/** Reads `count` upload frames off a data connection (the rest stays unread). */
async function readSomeFrames(socket: Socket, count: number): Promise<void> {
  let frames = 0;
  for await (const _ of readFrames(socket, CopyToGuestRequestSchema)) if (++frames === count) break;
}

// Exec's output on a data connection (guest.proto, "Data connections"): a guest must not
// make the host report an exit for output that did not all arrive, nor take output it
// did not ask for.
describe("exec output over a data connection from a hostile guest", { timeout: 15_000 }, () => {
  const stdoutFrame = (text: string) =>
    frame(ExecResponseSchema, { response: { case: "stdout", value: Buffer.from(text) } });
  const send = (call: ExecCall, response: NonNullable<MessageInitShape<typeof ExecResponseSchema>["response"]>) =>
    call.write(create(ExecResponseSchema, { response }));
  /** An Exec that moves to a data connection at once, runs `attack` on it, then exits 0 on the call. */
  const execScript = (attack: (socket: Socket, call: ExecCall) => Promise<void>, exitOnCall = true): FakeScript => ({
    exec: async (call, tools) => {
      send(call, { case: "started", value: { pid: 4242 } });
      const { ticket, connection } = tools.ticket();
      send(call, { case: "dataTicket", value: ticket });
      await attack(await connection, call);
      if (!exitOnCall) return;
      send(call, { case: "exit", value: { code: 0 } });
      send(call, { case: "exitCode", value: 0 });
      call.end();
    },
  });
  async function execRejection(handle: { exit: Promise<unknown> }): Promise<GuestError> {
    const error = await handle.exit.then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error, "the exit must be a failure").toBeInstanceOf(GuestError);
    return error as GuestError;
  }

  it("control: output on the data connection, then its end frame, then the exit, is one whole run", async () => {
    const guest = await connect(
      execScript(async (socket) => {
        await writeRaw(socket, stdoutFrame("hello "));
        await writeRaw(socket, stdoutFrame("world\n"));
        await writeRaw(socket, END_FRAME);
      }),
    );
    const result = await guest.run(["anything"]);
    expect(result.stdout).toBe("hello world\n");
    expect(result.exit.code).toBe(0);
    expect(fake?.calls.find((call) => call.method === "exec")?.metadata.get(DATA_CONNECTION_REQUEST_KEY)).toEqual([
      "1",
    ]);
  });

  it("an exit on the call while the data connection closed without its end frame is connection-lost, not a success", async () => {
    const guest = await connect(
      execScript(async (socket) => {
        await writeRaw(socket, stdoutFrame("part of it"));
        socket.destroy();
      }),
    );
    const error = await execRejection(guest.exec(["anything"]));
    expect(error.reason).toBe("connection-lost");
    expect(error.code).toBe(grpc.status.UNAVAILABLE);
  });

  it("an exit on the call while the data connection stays silent fails within seconds instead of hanging", async () => {
    const started = Date.now();
    const guest = await connect(execScript(async () => {}));
    const error = await execRejection(guest.exec(["anything"]));
    expect(error.reason).toBe("connection-lost");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("anything but stdout and stderr on the data connection is a protocol error", async () => {
    const guest = await connect(
      execScript(async (socket) => {
        await writeRaw(socket, frame(ExecResponseSchema, { response: { case: "exitCode", value: 0 } }));
        await writeRaw(socket, END_FRAME);
      }),
    );
    const error = await execRejection(guest.exec(["anything"]));
    expect(error.reason).toBe("protocol");
  });

  it("output on the call after the ticket, or a second ticket, is a protocol error", async () => {
    const guest = await connect(
      execScript(async (_socket, call) => {
        send(call, { case: "stdout", value: Buffer.from("out of order") });
      }, false),
    );
    expect((await execRejection(guest.exec(["anything"]))).reason).toBe("protocol");
  });

  it("a ticket to a host that did not ask is refused, and nothing is dialed", async () => {
    const guest = await connect({
      capabilities: IN_BAND_CAPABILITIES,
      exec: (call, tools) => {
        send(call, { case: "dataTicket", value: tools.ticket().ticket });
      },
    });
    expect((await execRejection(guest.exec(["anything"]))).reason).toBe("protocol");
    expect(fake?.dataConnections).toBe(0);
  });
});

// A port forward on a data connection must end as a stream ends only when the guest's
// end frame came: a cut connection is an error, never a short read passed off as EOF.
describe("a port forward over a data connection from a hostile guest", { timeout: 15_000 }, () => {
  const dataFrame = (text: string) =>
    frame(ForwardPortResponseSchema, { response: { case: "data", value: Buffer.from(text) } });
  const forwardScript = (attack: (socket: Socket, call: ForwardCall) => Promise<void>): FakeScript => ({
    capabilities: [...DATA_CAPABILITIES, Capability.PORT_FORWARD],
    forwardPort: async (call, tools) => {
      const socket = await tools.offer(call);
      call.write(create(ForwardPortResponseSchema, { response: { case: "connected", value: { address: "x" } } }));
      await attack(socket, call);
    },
  });
  /** Everything the forwarded connection gives until it ends, or the error it fails with. */
  function readToEnd(stream: NodeJS.ReadableStream): Promise<{ text: string; error?: GuestError }> {
    return new Promise((resolve) => {
      let text = "";
      stream.on("data", (chunk: Buffer) => {
        text += chunk.toString("latin1");
      });
      stream.on("end", () => resolve({ text }));
      stream.on("error", (error: GuestError) => resolve({ text, error }));
    });
  }

  it("control: the guest's bytes, then its end frame, are the stream and its end", async () => {
    const guest = await connect(
      forwardScript(async (socket, call) => {
        await writeRaw(socket, dataFrame("hello"));
        await writeRaw(socket, END_FRAME);
        call.end();
      }),
    );
    const connection = await guest.forwardPort(80);
    connection.end();
    expect(await readToEnd(connection)).toEqual({ text: "hello" });
  });

  it("a data connection cut before its end frame is connection-lost", async () => {
    const guest = await connect(
      forwardScript(async (socket) => {
        await writeRaw(socket, dataFrame("part"));
        socket.destroy();
      }),
    );
    const outcome = await readToEnd(await guest.forwardPort(80));
    expect(outcome.error?.reason).toBe("connection-lost");
  });

  it("a call that ends OK while the data connection stays silent fails instead of hanging", async () => {
    const guest = await connect(
      forwardScript(async (_socket, call) => {
        call.end();
      }),
    );
    const started = Date.now();
    const outcome = await readToEnd(await guest.forwardPort(80));
    expect(outcome.error?.reason).toBe("connection-lost");
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
