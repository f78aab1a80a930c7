// The agent's side of data connections (@guestkit/protocol's data-connection.ts), driven
// at the wire level: a grpc-js GuestServiceClient for the call and a raw Unix socket for
// the data connection, so what is checked is the agent, not the host library's client.
import { randomBytes } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type CopyFromGuestHeader,
  CopyFromGuestRequestSchema,
  type CopyFromGuestResponse,
  CopyFromGuestResponseSchema,
  type CopyToGuestRequest,
  CopyToGuestRequestSchema,
  type CopyToGuestResponse,
  DATA_CONNECTION_MIN_BYTES,
  DATA_CONNECTION_REQUEST_KEY,
  DATA_CONNECTION_TICKET_KEY,
  DATA_CONNECTION_WAIT_MS,
  dataConnectionPreamble,
  ExecResponseSchema,
  ForwardPortRequestSchema,
  ForwardPortResponseSchema,
  type GuestServiceClient,
  MAX_MESSAGE_BYTES,
  readFrames,
  TICKET_BYTES,
} from "@guestkit/protocol";
import { describe, expect, it } from "vitest";
import {
  eventually,
  fileMessages,
  openDescriptorCount,
  type RequestInit,
  statPath,
  type TestAgentSuite,
  useTestAgent,
} from "./copy-support.js";
import { collect, groupMembers, startRequest } from "./exec-client.js";

const MIB = 1024 * 1024;
const TEMP_MARKER = ".guestkit-";
const END_FRAME = Buffer.alloc(4);
// How long the agent may take to close a connection it refuses at once.
const PROMPTLY_MS = 1000;
// Slack on top of DATA_CONNECTION_WAIT_MS for what the agent does after its timer fires.
const WAIT_MARGIN_MS = 2000;

describe("an upload on a data connection", () => {
  // A restrictive umask: the modes sent must still be exact.
  const suite = useTestAgent({ umask: "077" });

  it("writes a big file, a directory and a batch of small entries exactly as sent", async () => {
    const tree = join(suite.dir, "tree");
    const big = randomBytes(3 * MIB + 7);
    const small = Buffer.from("small file\n");
    const upload = startUpload(suite.agent.client);
    const socket = await openDataConnection(suite, await ticketOf(upload.call));
    const frames = [
      frame({ request: { case: "start", value: { path: tree, isDir: true, mode: 0o750, mtime: 1_600_000_000n } } }),
      frame({ request: { case: "end", value: {} } }),
      ...fileMessages(join(tree, "big.bin"), big, { mode: 0o640, mtime: 1_700_000_000n }).map(frame),
      frame({
        request: {
          case: "batch",
          value: {
            entries: [
              {
                start: {
                  path: join(tree, "small.txt"),
                  size: BigInt(small.length),
                  mode: 0o604,
                  mtime: 1_650_000_000n,
                },
                data: small,
              },
              { start: { path: join(tree, "empty"), isDir: true, mode: 0o700, mtime: 1_500_000_000n } },
            ],
          },
        },
      }),
    ];
    socket.end(Buffer.concat([...frames, END_FRAME]));

    expect(await upload.answer).toMatchObject({
      success: true,
      error: "",
      entriesWritten: 4n,
      bytesWritten: BigInt(big.length + small.length),
    });
    expect(readFileSync(join(tree, "big.bin")).equals(big)).toBe(true);
    expect(readFileSync(join(tree, "small.txt")).equals(small)).toBe(true);
    expectModeAndTime(tree, 0o750, 1_600_000_000n);
    expectModeAndTime(join(tree, "big.bin"), 0o640, 1_700_000_000n);
    expectModeAndTime(join(tree, "small.txt"), 0o604, 1_650_000_000n);
    expectModeAndTime(join(tree, "empty"), 0o700, 1_500_000_000n);
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("fails when the ticket is never redeemed, writes nothing, and the ticket is dead afterwards", async () => {
    const target = join(suite.dir, "never");
    const started = performance.now();
    // The messages go on the call, where an agent that forgot its own ticket would take them.
    const upload = startUpload(suite.agent.client, fileMessages(target, "in-band"));
    const ticket = await ticketOf(upload.call);
    const answer = await upload.answer;
    const elapsed = performance.now() - started;

    expect(answer).toMatchObject({ success: false, errorCode: "PROTOCOL", entriesWritten: 0n, bytesWritten: 0n });
    expect(answer.error).toMatch(/no data connection/);
    // The client had the whole wait to connect, and the answer came soon after it.
    expect(elapsed).toBeGreaterThanOrEqual(DATA_CONNECTION_WAIT_MS - 100);
    expect(elapsed).toBeLessThan(DATA_CONNECTION_WAIT_MS + WAIT_MARGIN_MS);
    expect(readdirSync(suite.dir)).toEqual([]);
    const late = await openDataConnection(suite, ticket);
    expect(await closedWithin(late, PROMPTLY_MS)).toBe(true);
  });

  it("fails when the data connection is lost mid-file, leaving no file and no temp file", async () => {
    const target = join(suite.dir, "lost.bin");
    const messages = fileMessages(target, randomBytes(3 * MIB));
    const upload = startUpload(suite.agent.client);
    const socket = await openDataConnection(suite, await ticketOf(upload.call));
    // start and half the data; then the connection goes, without its end frame.
    socket.write(Buffer.concat(messages.slice(0, Math.floor(messages.length / 2)).map(frame)));
    expect(await eventually(() => leftovers(suite.dir).length === 1)).toBe(true);
    socket.destroy();

    const answer = await upload.answer;
    expect(answer).toMatchObject({ success: false, errorCode: "PROTOCOL", entriesWritten: 0n, bytesWritten: 0n });
    expect(answer.error).toMatch(/data connection/);
    // Checked once the answer is there: a client may look at the guest as soon as it is.
    expect(existsSync(target)).toBe(false);
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("refuses a frame longer than MAX_MESSAGE_BYTES, closes the connection, and leaves no partial file", async () => {
    const target = join(suite.dir, "oversized.bin");
    const [start] = fileMessages(target, Buffer.alloc(MIB)) as [RequestInit];
    const upload = startUpload(suite.agent.client);
    const socket = await openDataConnection(suite, await ticketOf(upload.call));
    const tooLong = Buffer.alloc(4);
    tooLong.writeUInt32BE(MAX_MESSAGE_BYTES + 1);
    // The length alone must be enough for a refusal: the agent must not wait for 16 MiB.
    socket.write(Buffer.concat([frame(start), tooLong]));

    const answer = await upload.answer;
    expect(answer).toMatchObject({ success: false, errorCode: "PROTOCOL", entriesWritten: 0n });
    expect(answer.error).toContain(`a frame of ${MAX_MESSAGE_BYTES + 1} bytes`);
    expect(await closedWithin(socket, PROMPTLY_MS)).toBe(true);
    expect(existsSync(target)).toBe(false);
    expect(leftovers(suite.dir)).toEqual([]);
  });

  it("closes the data connection and removes the temp file when the call is cancelled mid-file", async () => {
    const target = join(suite.dir, "cancelled.bin");
    const messages = fileMessages(target, randomBytes(2 * MIB)).map(frame);
    const descriptors = openDescriptorCount(suite.agent.agent.pid);
    const upload = startUpload(suite.agent.client);
    // The answer of a cancelled call is CANCELLED, and nobody waits for it.
    upload.answer.catch(() => undefined);
    const socket = await openDataConnection(suite, await ticketOf(upload.call));
    socket.write(Buffer.concat(messages.slice(0, 2)));
    expect(await eventually(() => leftovers(suite.dir).length === 1)).toBe(true);

    upload.call.cancel();
    expect(await closedWithin(socket, 3000)).toBe(true);
    expect(await eventually(() => leftovers(suite.dir).length === 0)).toBe(true);
    expect(existsSync(target)).toBe(false);
    expect(await eventually(() => openDescriptorCount(suite.agent.agent.pid) <= descriptors)).toBe(true);
  });
});

describe("a download on a data connection", () => {
  const suite = useTestAgent();

  it("sends a big file only on the data connection: header, the exact bytes, a final end", async () => {
    const file = join(suite.dir, "big.bin");
    const content = randomBytes(3 * MIB + 5);
    writeFileSync(file, content, { mode: 0o640 });

    const { inBand, frames } = await downloadOnDataConnection(suite, file);
    expect(inBand).toEqual([]);
    const entries = entriesOf(frames);
    expect([...entries.keys()]).toEqual(["big.bin"]);
    const entry = entries.get("big.bin");
    expect(entry?.header).toMatchObject({ isDir: false, size: BigInt(content.length), mode: 0o640 });
    expect(entry?.data.equals(content)).toBe(true);
  });

  it("lets a client half-close after its preamble: a download needs nothing more from it", async () => {
    const file = join(suite.dir, "big.bin");
    const content = randomBytes(2 * MIB);
    writeFileSync(file, content);
    const { frames } = await downloadOnDataConnection(suite, file, { halfClose: true });
    expect(entriesOf(frames).get("big.bin")?.data.equals(content)).toBe(true);
  });

  it("sends a tree, even of small files, only on the data connection", async () => {
    const root = join(suite.dir, "root");
    mkdirSync(join(root, "sub"), { recursive: true });
    writeFileSync(join(root, "a.txt"), "A");
    writeFileSync(join(root, "sub", "b.txt"), "BB");

    const { inBand, frames } = await downloadOnDataConnection(suite, root);
    expect(inBand).toEqual([]);
    const entries = entriesOf(frames);
    expect([...entries.keys()].sort()).toEqual(["root", "root/a.txt", "root/sub", "root/sub/b.txt"]);
    expect(entries.get("root")?.header.isDir).toBe(true);
    expect(entries.get("root/sub/b.txt")?.data.toString()).toBe("BB");
  });

  it("recognises a preamble that arrives a byte at a time", async () => {
    const file = join(suite.dir, "big.bin");
    const content = randomBytes(DATA_CONNECTION_MIN_BYTES);
    writeFileSync(file, content);
    const call = suite.agent.client.copyFromGuest(
      create(CopyFromGuestRequestSchema, { path: file }),
      withDataConnection(),
    );
    const inBand = messagesOf(call);
    const preamble = dataConnectionPreamble(await ticketOf(call));
    const socket = await connected(suite.agent.agent.socketPath);
    // A proxy between host and guest may pass the bytes on in pieces this small.
    for (const byte of preamble) {
      socket.write(Buffer.from([byte]));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const frames: CopyFromGuestResponse[] = [];
    for await (const message of readFrames(socket, CopyFromGuestResponseSchema)) frames.push(message);
    expect(await inBand).toEqual([]);
    expect(entriesOf(frames).get("big.bin")?.data.equals(content)).toBe(true);
  });

  it("keeps a file under DATA_CONNECTION_MIN_BYTES on the call: no ticket, the messages in-band", async () => {
    const file = join(suite.dir, "small.bin");
    const content = randomBytes(DATA_CONNECTION_MIN_BYTES - 1);
    writeFileSync(file, content);

    const call = suite.agent.client.copyFromGuest(
      create(CopyFromGuestRequestSchema, { path: file }),
      withDataConnection(),
    );
    const headers = headersOf(call);
    const messages = await messagesOf(call);
    expect((await headers).get(DATA_CONNECTION_TICKET_KEY)).toEqual([]);
    const entry = entriesOf(messages).get("small.bin");
    expect(entry?.data.equals(content)).toBe(true);
  });

  it("stops streaming and closes the data connection when the call is cancelled", async () => {
    // Sparse: 1 GiB the agent would take seconds to send, and no disk.
    const file = join(suite.dir, "huge.bin");
    writeFileSync(file, "");
    truncateSync(file, 1024 * MIB);
    const descriptors = openDescriptorCount(suite.agent.agent.pid);
    const call = suite.agent.client.copyFromGuest(
      create(CopyFromGuestRequestSchema, { path: file }),
      withDataConnection(),
    );
    call.on("error", () => undefined);
    const socket = await openDataConnection(suite, await ticketOf(call));
    let received = 0;
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    expect(await eventually(() => received >= MIB)).toBe(true);
    // Held back by the socket's buffers while the cancel goes out, then read to the end.
    socket.pause();
    call.cancel();
    expect(await closedWithin(socket, 3000)).toBe(true);
    // An agent that went on streaming to nobody would have sent the whole GiB.
    expect(received).toBeLessThan(64 * MIB);
    // Nor does it keep the file or the connection open.
    expect(await eventually(() => openDescriptorCount(suite.agent.agent.pid) <= descriptors)).toBe(true);
  });

  it("fails with UNAVAILABLE when the data connection is lost mid-file", async () => {
    const file = join(suite.dir, "huge.bin");
    writeFileSync(file, "");
    truncateSync(file, 1024 * MIB);
    const call = suite.agent.client.copyFromGuest(
      create(CopyFromGuestRequestSchema, { path: file }),
      withDataConnection(),
    );
    const ended = messagesOf(call).then(
      () => expect.fail("the download ended OK without its data connection"),
      (error: grpc.ServiceError) => error,
    );
    const socket = await openDataConnection(suite, await ticketOf(call));
    let received = 0;
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    expect(await eventually(() => received >= MIB)).toBe(true);
    socket.destroy();
    const error = await ended;
    expect(error.code).toBe(grpc.status.UNAVAILABLE);
    expect(error.details).toMatch(/data connection/);
  });

  it("fails with UNAVAILABLE when the ticket is never redeemed", async () => {
    const file = join(suite.dir, "big.bin");
    writeFileSync(file, randomBytes(DATA_CONNECTION_MIN_BYTES));
    const started = performance.now();
    const call = suite.agent.client.copyFromGuest(
      create(CopyFromGuestRequestSchema, { path: file }),
      withDataConnection(),
    );
    const ended = messagesOf(call).then(
      (messages) => expect.fail(`the download ended OK with ${messages.length} messages on the call`),
      (error: grpc.ServiceError) => error,
    );
    await ticketOf(call);
    const error = await ended;
    expect(error.code).toBe(grpc.status.UNAVAILABLE);
    expect(error.details).toMatch(/no data connection/);
    expect(performance.now() - started).toBeLessThan(DATA_CONNECTION_WAIT_MS + WAIT_MARGIN_MS);
  });
});

describe("a command's output on a data connection", () => {
  const suite = useTestAgent();

  /** An Exec asking for a data connection; what came on the call, and its ticket when one came. */
  function execAsking(command: string[]) {
    const call = suite.agent.client.exec(withDataConnection());
    let onTicket: (ticket: string) => void = () => undefined;
    const ticket = new Promise<string>((resolve) => {
      onTicket = resolve;
    });
    let onPid: (pid: number) => void = () => undefined;
    const pid = new Promise<number>((resolve) => {
      onPid = resolve;
    });
    let inBandBeforeTicket = 0;
    let ticketSeen = false;
    const result = collect(call, (response) => {
      const message = response.response;
      if (message.case === "started") onPid(message.value.pid);
      if (message.case === "dataTicket") {
        ticketSeen = true;
        onTicket(message.value);
      } else if (message.case === "stdout" && !ticketSeen) {
        inBandBeforeTicket += message.value.byteLength;
      }
    });
    call.write(startRequest({ command }));
    call.end();
    return { call, result, ticket, pid, inBandBeforeTicket: () => inBandBeforeTicket };
  }

  it("moves to the data connection after DATA_CONNECTION_MIN_BYTES on the call, and sends the exit after the end frame", async () => {
    const size = 8 * MIB;
    const exec = execAsking(["head", "-c", String(size), "/dev/zero"]);
    const socket = await openDataConnection(suite, await exec.ticket);
    let onData = 0;
    let endFrameAt = 0;
    for await (const message of readFrames(socket, ExecResponseSchema)) {
      expect(message.response.case).toBe("stdout");
      onData += (message.response.value as Uint8Array).byteLength;
    }
    endFrameAt = performance.now();
    const result = await exec.result;
    const exitAt = performance.now();
    expect(result.status.code).toBe(grpc.status.OK);
    expect(result.exitCode).toBe(0);
    expect(exec.inBandBeforeTicket()).toBeGreaterThanOrEqual(DATA_CONNECTION_MIN_BYTES);
    expect(exec.inBandBeforeTicket() + onData).toBe(size);
    expect(result.stdout.length).toBe(exec.inBandBeforeTicket());
    expect(exitAt).toBeGreaterThanOrEqual(endFrameAt);
    expect(result.kinds.filter((kind) => kind === "dataTicket")).toHaveLength(1);
  });

  it("a command with little output gets no ticket", async () => {
    const exec = execAsking(["head", "-c", String(DATA_CONNECTION_MIN_BYTES - 1), "/dev/zero"]);
    const result = await exec.result;
    expect(result.kinds).not.toContain("dataTicket");
    expect(result.stdout.length).toBe(DATA_CONNECTION_MIN_BYTES - 1);
  });

  it("holds the command back until the client connects, however late, and then delivers all of it", async () => {
    const size = 4 * MIB;
    const exec = execAsking(["head", "-c", String(size), "/dev/zero"]);
    await exec.ticket;
    // Later than a copy's ticket would stay good: a client whose reader stopped reads the ticket late.
    await new Promise((resolve) => setTimeout(resolve, DATA_CONNECTION_WAIT_MS + 500));
    let settled = false;
    void exec.result.then(() => {
      settled = true;
    });
    expect(settled, "the call must still be open").toBe(false);
    const socket = await openDataConnection(suite, await exec.ticket);
    let onData = 0;
    for await (const message of readFrames(socket, ExecResponseSchema)) {
      onData += (message.response.value as Uint8Array).byteLength;
    }
    const result = await exec.result;
    expect(result.exitCode).toBe(0);
    expect(exec.inBandBeforeTicket() + onData).toBe(size);
  }, 20_000);

  it("a cancel while the client has not connected yet ends the command", async () => {
    const exec = execAsking(["sh", "-c", "head -c 4194304 /dev/zero; exec sleep 60"]);
    await exec.ticket;
    const pid = await exec.pid;
    exec.call.cancel();
    await exec.result;
    expect(await eventually(() => groupMembers(pid).length === 0)).toBe(true);
  });

  it("fails with UNAVAILABLE and ends the command when the data connection is lost", async () => {
    const exec = execAsking(["sh", "-c", "exec cat /dev/zero"]);
    const socket = await openDataConnection(suite, await exec.ticket);
    let received = 0;
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    expect(await eventually(() => received >= MIB)).toBe(true);
    socket.destroy();
    const result = await exec.result;
    expect(result.status.code).toBe(grpc.status.UNAVAILABLE);
    expect(result.status.details).toMatch(/data connection/);
    expect(result.exitCode).toBeUndefined();
    expect(await eventually(() => groupMembers(result.pid as number).length === 0)).toBe(true);
  });
});

describe("a port forward on a data connection", () => {
  const suite = useTestAgent();

  /** A TCP server inside the "guest" that echoes, and tells when each connection closed. */
  async function echoServer(): Promise<{ port: number; closed: Promise<void>; close(): void }> {
    let onClosed: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => {
      onClosed = resolve;
    });
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      socket.on("error", () => undefined);
      socket.on("close", onClosed);
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { port: (server.address() as AddressInfo).port, closed, close: () => server.close() };
  }

  function forwardAsking(port: number) {
    const call = suite.agent.client.forwardPort(withDataConnection());
    call.on("error", () => undefined);
    // `connected` is read and dropped: the status comes only after the messages.
    call.resume();
    const status = new Promise<grpc.StatusObject>((resolve) => call.once("status", resolve));
    call.write(create(ForwardPortRequestSchema, { request: { case: "start", value: { host: "127.0.0.1", port } } }));
    return { call, status };
  }

  it("carries both directions as frames, each ended by its end frame, then ends the call OK", async () => {
    const echo = await echoServer();
    try {
      const forward = forwardAsking(echo.port);
      const socket = await openDataConnection(suite, await ticketOf(forward.call));
      const payload = randomBytes(3 * MIB);
      const sent = Buffer.concat([
        ...[0, 1, 2].map((i) =>
          forwardFrame({ request: { case: "data", value: payload.subarray(i * MIB, (i + 1) * MIB) } }),
        ),
        END_FRAME,
      ]);
      socket.write(sent);
      const echoed: Buffer[] = [];
      for await (const message of readFrames(socket, ForwardPortResponseSchema)) {
        if (message.response.case === "data") echoed.push(Buffer.from(message.response.value));
      }
      expect(Buffer.concat(echoed).equals(payload)).toBe(true);
      expect((await forward.status).code).toBe(grpc.status.OK);
      await echo.closed;
    } finally {
      echo.close();
    }
  });

  it("a ticket never redeemed fails the call with UNAVAILABLE and closes the TCP connection", async () => {
    const echo = await echoServer();
    try {
      const forward = forwardAsking(echo.port);
      await ticketOf(forward.call);
      const status = await forward.status;
      expect(status.code).toBe(grpc.status.UNAVAILABLE);
      expect(status.details).toMatch(/no data connection/);
      await echo.closed;
    } finally {
      echo.close();
    }
  });

  it("a data connection lost mid-stream fails the call with UNAVAILABLE and closes the TCP connection", async () => {
    const echo = await echoServer();
    try {
      const forward = forwardAsking(echo.port);
      const socket = await openDataConnection(suite, await ticketOf(forward.call));
      socket.write(forwardFrame({ request: { case: "data", value: Buffer.from("half a conversation") } }));
      socket.destroy();
      expect((await forward.status).code).toBe(grpc.status.UNAVAILABLE);
      await echo.closed;
    } finally {
      echo.close();
    }
  });
});

describe("who may use a data connection", () => {
  const suite = useTestAgent();

  it("a connection presenting a ticket nobody was given is closed at once, and logged", async () => {
    const socket = await openDataConnection(suite, randomBytes(TICKET_BYTES).toString("hex"));
    expect(await closedWithin(socket, PROMPTLY_MS)).toBe(true);
    expect(await eventually(() => suite.agent.agent.stderr().includes("refused a data connection"))).toBe(true);
  });

  it("a ticket brings one connection: a second one with it is closed, the first carries the upload", async () => {
    const target = join(suite.dir, "once.bin");
    const content = randomBytes(2 * MIB);
    const messages = fileMessages(target, content).map(frame);
    const upload = startUpload(suite.agent.client);
    const ticket = await ticketOf(upload.call);
    const first = await openDataConnection(suite, ticket);
    first.write(Buffer.concat(messages.slice(0, 2)));
    // The agent writes the file: the first connection has redeemed the ticket.
    expect(await eventually(() => leftovers(suite.dir).length === 1)).toBe(true);

    const second = await openDataConnection(suite, ticket);
    expect(await closedWithin(second, PROMPTLY_MS)).toBe(true);
    first.end(Buffer.concat([...messages.slice(2), END_FRAME]));
    expect(await upload.answer).toMatchObject({ success: true, bytesWritten: BigInt(content.length) });
    expect(readFileSync(target).equals(content)).toBe(true);
  });

  it("a connection that begins like one and then says nothing is closed after DATA_CONNECTION_WAIT_MS", async () => {
    const socket = await connected(suite.agent.agent.socketPath);
    const started = performance.now();
    socket.write("GK");
    expect(await closedWithin(socket, DATA_CONNECTION_WAIT_MS + WAIT_MARGIN_MS)).toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(DATA_CONNECTION_WAIT_MS - 100);
  });

  it("the agent still serves ordinary calls after all of that", async () => {
    expect(await statPath(suite.agent.client, suite.dir)).toMatchObject({ exists: true, isDir: true });
  });
});

/** Call metadata that asks for a data connection. */
function withDataConnection(): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set(DATA_CONNECTION_REQUEST_KEY, "1");
  return metadata;
}

interface Upload {
  readonly call: grpc.ClientWritableStream<CopyToGuestRequest>;
  readonly answer: Promise<CopyToGuestResponse>;
}

/** A CopyToGuest call asking for a data connection; `inBand` is written on the call, which then ends. */
function startUpload(client: GuestServiceClient, inBand: RequestInit[] = []): Upload {
  let settle: (error: grpc.ServiceError | null, response?: CopyToGuestResponse) => void = () => undefined;
  const answer = new Promise<CopyToGuestResponse>((resolve, reject) => {
    settle = (error, response) => {
      if (error || !response) reject(error ?? new Error("no response"));
      else resolve(response);
    };
  });
  const call = client.copyToGuest(withDataConnection(), {}, settle);
  for (const message of inBand) call.write(create(CopyToGuestRequestSchema, message));
  call.end();
  return { call, answer };
}

/** The response headers of a call, as they come. */
function headersOf(call: { once(event: "metadata", listener: (headers: grpc.Metadata) => void): unknown }) {
  return new Promise<grpc.Metadata>((resolve) => call.once("metadata", resolve));
}

/** The ticket in a call's response headers; the call must have been given one. */
async function ticketOf(call: Parameters<typeof headersOf>[0]): Promise<string> {
  const headers = await headersOf(call);
  const [ticket] = headers.get(DATA_CONNECTION_TICKET_KEY);
  expect(ticket).toMatch(/^[0-9a-f]{64}$/);
  return ticket as string;
}

/** A raw connection to the agent's Unix socket. */
function connected(socketPath: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.off("error", reject);
      // A refused connection may be reset under a write: the tests look at 'close'.
      socket.on("error", () => undefined);
      resolve(socket);
    });
  });
}

/** A raw connection that has presented `ticket` as a data connection does. */
async function openDataConnection(suite: TestAgentSuite, ticket: string): Promise<Socket> {
  const socket = await connected(suite.agent.agent.socketPath);
  socket.write(dataConnectionPreamble(ticket));
  return socket;
}

/** Whether the agent closed `socket` within `timeoutMs` (what it still sends is read and dropped). */
function closedWithin(socket: Socket, timeoutMs: number): Promise<boolean> {
  if (socket.closed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, timeoutMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.resume();
  });
}

/** One CopyToGuestRequest as a frame: its length, 4 bytes big-endian, then the message. */
function frame(message: RequestInit): Buffer {
  const bytes = toBinary(CopyToGuestRequestSchema, create(CopyToGuestRequestSchema, message));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** A CopyFromGuest asking for a data connection: what came on the call, and the frames on the connection. */
async function downloadOnDataConnection(
  suite: TestAgentSuite,
  path: string,
  options: { halfClose?: boolean } = {},
): Promise<{ inBand: CopyFromGuestResponse[]; frames: CopyFromGuestResponse[] }> {
  const call = suite.agent.client.copyFromGuest(create(CopyFromGuestRequestSchema, { path }), withDataConnection());
  const inBand = messagesOf(call);
  const socket = await openDataConnection(suite, await ticketOf(call));
  if (options.halfClose) socket.end();
  const frames: CopyFromGuestResponse[] = [];
  for await (const message of readFrames(socket, CopyFromGuestResponseSchema)) frames.push(message);
  return { inBand: await inBand, frames };
}

/** Every message of a download call, once it ended OK. */
function messagesOf(call: grpc.ClientReadableStream<CopyFromGuestResponse>): Promise<CopyFromGuestResponse[]> {
  return new Promise((resolve, reject) => {
    const messages: CopyFromGuestResponse[] = [];
    call.on("data", (message: CopyFromGuestResponse) => messages.push(message));
    call.on("error", reject);
    call.on("end", () => resolve(messages));
  });
}

/**
 * The entries of a download (no batches: none was asked for), checking its framing:
 * header, data..., end for each, and only the last end final.
 */
function entriesOf(messages: CopyFromGuestResponse[]): Map<string, { header: CopyFromGuestHeader; data: Buffer }> {
  const entries = new Map<string, { header: CopyFromGuestHeader; data: Buffer }>();
  let open: { header: CopyFromGuestHeader; parts: Buffer[] } | undefined;
  for (const [index, { response }] of messages.entries()) {
    const last = index === messages.length - 1;
    if (response.case === "header") {
      expect(open, `header ${response.value.path} inside another entry`).toBeUndefined();
      open = { header: response.value, parts: [] };
    } else if (response.case === "data") {
      expect(open, "data outside an entry").toBeDefined();
      open?.parts.push(Buffer.from(response.value));
    } else if (response.case === "end" && open) {
      expect(response.value.final, `end ${index}: final only on the last`).toBe(last);
      expect(response.value.partial).toBe(false);
      entries.set(open.header.path, { header: open.header, data: Buffer.concat(open.parts) });
      open = undefined;
    } else {
      expect.fail(`unexpected message ${index}: ${response.case}`);
    }
  }
  expect(open, "the stream ended inside an entry").toBeUndefined();
  return entries;
}

/** Temporary files a copy left in `dir`. */
function leftovers(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((name) => name.includes(TEMP_MARKER));
}

function expectModeAndTime(path: string, mode: number, mtimeSeconds: bigint): void {
  expect(statSync(path).mode & 0o7777, path).toBe(mode);
  expect(lstatSync(path, { bigint: true }).mtimeNs, path).toBe(mtimeSeconds * 1_000_000_000n);
}

/** One ForwardPortRequest as a frame. */
function forwardFrame(message: MessageInitShape<typeof ForwardPortRequestSchema>): Buffer {
  const bytes = toBinary(ForwardPortRequestSchema, create(ForwardPortRequestSchema, message));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}
