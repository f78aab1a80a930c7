// Bad input to the agent, from the bytes of the gRPC framing up to well-formed messages
// that ask for nonsense. Every case must get a clear answer (a gRPC status with a
// message, or the method's in-band error) and the agent must go on serving: each test
// ends by running a command and checking what it leaves behind.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { createGuestClient, type GuestClient } from "@guestkit/host";
import {
  type AgentProcess,
  decodeResponse,
  encodeRequest,
  GUEST_METHODS,
  type GuestMethod,
  grpcFrame,
  RawGrpcConnection,
  type RequestInit,
  startAgent,
} from "@guestkit/testkit";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type AgentLoad, agentLoad, expectServing, expectSettled } from "./support.js";

const Status = {
  OK: 0,
  NOT_FOUND: 5,
  INVALID_ARGUMENT: 3,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
} as const;
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const PATH_MAX = 4096;
const NAME_MAX = 255;

let agent: AgentProcess;
let client: GuestClient;
let raw: RawGrpcConnection;
let baseline: AgentLoad;
let work: string;

beforeAll(async () => {
  agent = await startAgent();
  client = createGuestClient(`unix:${agent.socketPath}`);
  await expectServing(client);
  await client.stat("/");
  await client.copyFrom("/etc/hostname", join(tmpdir(), `guestkit-warmup-${process.pid}`));
  await rm(join(tmpdir(), `guestkit-warmup-${process.pid}`), { force: true });
  baseline = agentLoad(agent);
});

afterAll(async () => {
  await client.close();
  await agent.stop();
});

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-bad-input-"));
  raw = await RawGrpcConnection.open(agent.socketPath);
});

afterEach(async () => {
  await raw.close();
  await rm(work, { recursive: true, force: true });
  // Whatever the case did, the agent serves the next call and holds nothing more, and no
  // input reached its last-resort handler for uncaught errors.
  await expectServing(client);
  await expectSettled(agent, baseline);
  expect(agent.stderr()).not.toMatch(/uncaught/);
});

/** A call of `method` with these request messages; responses decoded. */
async function call<M extends GuestMethod>(method: M, requests: RequestInit<M>[], options: { end?: boolean } = {}) {
  const result = await raw.call(GUEST_METHODS[method].path, {
    body: requests.map((request) => grpcFrame(encodeRequest(method, request))),
    endStream: options.end !== false,
  });
  return { ...result, responses: result.messages.map((bytes) => decodeResponse(method, bytes)) };
}

/** Sends raw body bytes to `path`; returns the status. */
async function rawBody(path: string, body: Uint8Array[], headers: Record<string, string> = {}) {
  return raw.call(path, { body, headers });
}

function expectClearStatus(result: { grpcStatus: number | undefined; grpcMessage: string }, code: number): void {
  expect(result.grpcStatus).toBe(code);
  expect(result.grpcMessage.length).toBeGreaterThan(10);
}

const statRoot = () => encodeRequest("statPath", { path: "/" });

describe("broken gRPC framing", () => {
  const STAT = GUEST_METHODS.statPath.path;

  it("a length prefix longer than the body", async () => {
    const result = await rawBody(STAT, [grpcFrame(Buffer.from([0x0a, 0x01]), { declaredLength: 100 })]);
    expect(result.grpcStatus).not.toBe(Status.OK);
    expect(result.grpcMessage).toMatch(/no request message/);
  });

  it("a length prefix of 4 GiB", async () => {
    const result = await rawBody(STAT, [grpcFrame(statRoot(), { declaredLength: 0xffffffff })]);
    expectClearStatus(result, Status.RESOURCE_EXHAUSTED);
    expect(result.grpcMessage).toMatch(/larger than max \(4294967295 vs 16777216\)/);
  });

  it("a prefix cut short (2 of its 5 bytes)", async () => {
    const result = await rawBody(STAT, [Buffer.from([0, 0])]);
    expect(result.grpcStatus).not.toBe(Status.OK);
    expect(result.grpcMessage.length).toBeGreaterThan(10);
  });

  it("garbage protobuf", async () => {
    const result = await rawBody(STAT, [grpcFrame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]))]);
    expectClearStatus(result, Status.INTERNAL);
    expect(result.grpcMessage).toMatch(/deserializing/);
  });

  it("a string field that is not UTF-8", async () => {
    const result = await rawBody(STAT, [grpcFrame(Buffer.from([0x0a, 0x02, 0xff, 0xfe]))]);
    expectClearStatus(result, Status.INTERNAL);
  });

  it("the compressed flag without grpc-encoding: compressed bytes are refused", async () => {
    const result = await rawBody(STAT, [grpcFrame(gzipSync(statRoot()), { flag: 1 })]);
    expectClearStatus(result, Status.INTERNAL);
  });

  it("the compressed flag without grpc-encoding: grpc-js reads an uncompressed payload as it is", async () => {
    // Lenient, but harmless: the bytes are parsed exactly as if the flag were 0.
    const result = await rawBody(STAT, [grpcFrame(statRoot(), { flag: 1 })]);
    expect(result.grpcStatus).toBe(Status.OK);
    expect(decodeResponse("statPath", result.messages[0] as Buffer).isDir).toBe(true);
  });

  it("an encoding the agent does not know", async () => {
    const result = await rawBody(STAT, [grpcFrame(statRoot(), { flag: 1 })], { "grpc-encoding": "zstd-nonsense" });
    expectClearStatus(result, Status.UNIMPLEMENTED);
  });

  it("gzip that is not gzip", async () => {
    const result = await rawBody(STAT, [grpcFrame(Buffer.from("not gzip at all"), { flag: 1 })], {
      "grpc-encoding": "gzip",
    });
    expectClearStatus(result, Status.INTERNAL);
  });

  it("a gzip bomb is cut at the message limit", async () => {
    // 64 MiB of zeros in a string field compress to about 64 KiB.
    const inflated = Buffer.alloc(64 * 1024 * 1024);
    const result = await rawBody(STAT, [grpcFrame(gzipSync(inflated), { flag: 1 })], { "grpc-encoding": "gzip" });
    expectClearStatus(result, Status.RESOURCE_EXHAUSTED);
  });

  it(`a message over MAX_MESSAGE_BYTES (${MAX_MESSAGE_BYTES})`, async () => {
    const big = Buffer.alloc(MAX_MESSAGE_BYTES + 1024, 0x41);
    const result = await rawBody(GUEST_METHODS.copyToGuest.path, [grpcFrame(big)]);
    expectClearStatus(result, Status.RESOURCE_EXHAUSTED);
  });

  it("two messages to a unary method", async () => {
    const result = await rawBody(STAT, [grpcFrame(statRoot()), grpcFrame(statRoot())]);
    expect(result.grpcStatus).not.toBe(Status.OK);
    expect(result.grpcMessage).toMatch(/second request message/);
  });

  it("an invalid grpc-timeout", async () => {
    const result = await rawBody(STAT, [grpcFrame(statRoot())], { "grpc-timeout": "soon" });
    expectClearStatus(result, Status.INTERNAL);
  });

  it("unknown methods and services", async () => {
    for (const path of ["/guest.GuestService/Nope", "/guest.Nope/Exec", "/", "/x"]) {
      const result = await rawBody(path, [grpcFrame(Buffer.alloc(0))]);
      expect(result.grpcStatus, path).toBe(Status.UNIMPLEMENTED);
    }
  });

  it("garbage to the reflection services: INTERNAL, not an uncaught error in the agent", async () => {
    for (const version of ["v1", "v1alpha"]) {
      const result = await rawBody(`/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`, [
        grpcFrame(Buffer.from([0x0a, 0x01, 0x2f, 0xff, 0xff, 0xff])),
        grpcFrame(Buffer.from([0xff])),
      ]);
      expectClearStatus(result, Status.INTERNAL);
      expect(result.grpcMessage).toMatch(/deserializing/);
    }
  });

  it("not gRPC at all: another content type", async () => {
    const result = await rawBody(STAT, [grpcFrame(statRoot())], { "content-type": "text/plain" });
    expect(result.httpStatus).toBe(415);
  });

  it("a garbage message in the middle of a running Exec ends the call and the command", async () => {
    const result = await raw.call(GUEST_METHODS.exec.path, {
      body: [
        grpcFrame(encodeRequest("exec", { request: { case: "start", value: { command: ["sleep", "600"] } } })),
        grpcFrame(Buffer.from([0xff, 0xff, 0xff])),
      ],
      endStream: false,
      timeoutMs: 5000,
    });
    expectClearStatus(result, Status.INTERNAL);
    expect(result.timedOut).toBe(false);
    // afterEach checks that the sleep is gone.
  });

  it("a stream reset right after the start of an Exec ends the command", async () => {
    const result = await raw.call(GUEST_METHODS.exec.path, {
      body: [grpcFrame(encodeRequest("exec", { request: { case: "start", value: { command: ["sleep", "600"] } } }))],
      endStream: false,
      resetAfterMs: 200,
    });
    expect(result.grpcStatus).toBeUndefined();
  });
});

describe("Exec requests that make no sense", () => {
  type ExecInit = RequestInit<"exec">;
  const start = (value: Record<string, unknown>): ExecInit => ({ request: { case: "start", value } }) as ExecInit;
  const cases: Array<[string, ExecInit[], RegExp]> = [
    ["an empty stream", [], /first Exec message must be start, got the end of the stream/],
    ["stdin before start", [{ request: { case: "stdin", value: Buffer.from("x") } }], /must be start, got stdin/],
    ["an empty message first", [{}], /must be start, got an empty message/],
    ["an empty command", [start({ command: [] })], /command is empty/],
    ["a NUL in an argument", [start({ command: ["echo", "a\0b"] })], /NUL/],
    ["an env name with =", [start({ command: ["true"], env: { "A=B": "c" } })], /bad name/],
    ["a NUL in an env value", [start({ command: ["true"], env: { A: "\0" } })], /NUL/],
    ["a relative cwd", [start({ command: ["true"], cwd: "tmp" })], /absolute/],
    ["a NUL in the cwd", [start({ command: ["true"], cwd: "/tmp\0" })], /NUL/],
    ["a NUL in the user", [start({ command: ["true"], user: "root\0" })], /NUL/],
    ["a negative timeout", [start({ command: ["true"], timeoutSeconds: -5 })], /negative/],
    ["a huge terminal", [start({ command: ["true"], tty: true, rows: 70000 })], /out of range/],
  ];
  for (const [name, requests, message] of cases) {
    it(`${name}: INVALID_ARGUMENT`, async () => {
      const result = await call("exec", requests);
      expectClearStatus(result, Status.INVALID_ARGUMENT);
      expect(result.grpcMessage).toMatch(message);
      expect(result.responses).toEqual([]);
    });
  }

  const running: Array<[string, RequestInit<"exec">]> = [
    ["a second start", { request: { case: "start", value: { command: ["true"] } } }],
    ["an unknown signal", { request: { case: "signal", value: { name: "SIGNOPE" } } }],
    ["a resize to 100000 columns", { request: { case: "resize", value: { rows: 10, cols: 100_000 } } }],
  ];
  for (const [name, request] of running) {
    it(`${name} while the command runs: INVALID_ARGUMENT, and the command is ended`, async () => {
      const result = await call("exec", [
        { request: { case: "start", value: { command: ["sleep", "600"], tty: name.includes("resize") } } },
        request,
      ]);
      expectClearStatus(result, Status.INVALID_ARGUMENT);
      expect(result.responses[0]?.response.case).toBe("started");
    });
  }

  it("stdin after stdin_close", async () => {
    const result = await call("exec", [
      { request: { case: "start", value: { command: ["cat"] } } },
      { request: { case: "stdinClose", value: {} } },
      { request: { case: "stdin", value: Buffer.from("late") } },
    ]);
    // cat may exit on its EOF before the late stdin is read: then that is simply ignored.
    if (result.grpcStatus !== Status.OK) expect(result.grpcMessage).toMatch(/stdin after stdin_close/);
  });

  /** Runs a start through the real client and returns its exit. */
  async function exitOf(options: Parameters<GuestClient["run"]>[1], argv = ["true"]) {
    return (await client.run(argv, options)).exit;
  }

  it("a user that does not exist: exit 126, start_failed, the reason", async () => {
    const exit = await exitOf({ user: "no-such-user-guestkit" });
    expect(exit).toMatchObject({ code: 126, startFailed: true });
    expect(exit.startError).toMatch(/unknown user "no-such-user-guestkit"/);
  });

  it("a uid with no passwd entry: exit 126 saying to give a gid; uid:gid runs", async () => {
    const exit = await exitOf({ user: 4_000_123 });
    expect(exit).toMatchObject({ code: 126, startFailed: true });
    expect(exit.startError).toMatch(/uid 4000123 has no \/etc\/passwd entry/);
    const result = await client.run(["id", "-u"], { user: "4000123:4000123" });
    expect(result.stdout).toBe("4000123\n");
  });

  it("a cwd that does not exist: exit 126, start_failed, the reason", async () => {
    const exit = await exitOf({ cwd: "/no/such/directory" });
    expect(exit).toMatchObject({ code: 126, startFailed: true });
    expect(exit.startError).toMatch(/cannot enter working directory \/no\/such\/directory/);
  });

  it("a command that does not exist: exit 127, start_failed", async () => {
    const exit = await exitOf({}, ["/no/such/command"]);
    expect(exit).toMatchObject({ code: 127, startFailed: true });
  });

  it("100,000 environment entries that fit: the command sees every one", async () => {
    const env: Record<string, string> = {};
    for (let i = 0; i < 100_000; i += 1) env[`V${i}`] = String(i);
    const result = await client.run(["sh", "-c", 'env | grep -c "^V[0-9]*="'], { env });
    expect(result.stdout).toBe("100000\n");
  });

  it("100,000 environment entries over the kernel's limit: exit 126 with E2BIG, not a crash", async () => {
    const env: Record<string, string> = {};
    for (let i = 0; i < 100_000; i += 1) env[`VARIABLE_${i}`] = "x".repeat(64);
    const exit = await exitOf({ env });
    expect(exit).toMatchObject({ code: 126, startFailed: true });
    expect(exit.startError).toMatch(/E2BIG/);
  });

  it("an argument of 1 MiB (over the kernel's 128 KiB per string): a clear start failure", async () => {
    const exit = await exitOf({}, ["echo", "x".repeat(1024 * 1024)]);
    expect(exit).toMatchObject({ code: 126, startFailed: true });
    expect(exit.startError).toMatch(/E2BIG/);
  });
});

describe("CopyToGuest streams that make no sense", () => {
  type Upload = RequestInit<"copyToGuest">;
  const startOf = (value: Record<string, unknown>): Upload => ({ request: { case: "start", value } }) as Upload;
  const data = (bytes: string | Buffer): Upload => ({
    request: { case: "data", value: typeof bytes === "string" ? Buffer.from(bytes) : bytes },
  });
  const end: Upload = { request: { case: "end", value: {} } };

  async function upload(requests: Upload[]) {
    const result = await call("copyToGuest", requests);
    expect(result.grpcStatus).toBe(Status.OK);
    const response = result.responses[0];
    if (!response) throw new Error("no CopyToGuest response");
    return response;
  }

  /** Nothing at all was created in the work dir (no file, no temp file). */
  async function expectNothingWritten(): Promise<void> {
    expect(await readdir(work)).toEqual([]);
  }

  const cases: Array<[string, (dir: string) => Upload[], string, RegExp]> = [
    ["data before start", () => [data("x")], "PROTOCOL", /data arrived before any start/],
    ["end before start", () => [end], "PROTOCOL", /end message arrived before any start/],
    ["an empty message", () => [{}], "PROTOCOL", /no start, data or end/],
    [
      "a second start before end",
      (dir) => [startOf({ path: `${dir}/a`, size: 1n }), startOf({ path: `${dir}/b` })],
      "PROTOCOL",
      /new start arrived before this entry's end/,
    ],
    [
      "the stream ends before end",
      (dir) => [startOf({ path: `${dir}/a`, size: 2n }), data("ab")],
      "PROTOCOL",
      /stream ended before this entry's end/,
    ],
    ["a negative size", (dir) => [startOf({ path: `${dir}/a`, size: -1n }), end], "EINVAL", /negative size/],
    [
      "more data than the size",
      (dir) => [startOf({ path: `${dir}/a`, size: 2n }), data("abc"), end],
      "SIZE_MISMATCH",
      /more data than the declared size of 2 bytes/,
    ],
    [
      "a huge size and a little data",
      (dir) => [startOf({ path: `${dir}/a`, size: 2n ** 62n }), data("abc"), end],
      "SIZE_MISMATCH",
      /3 of the declared 4611686018427387904 bytes/,
    ],
    ["a NUL in the path", (dir) => [startOf({ path: `${dir}/a\0b` }), end], "EINVAL", /NUL/],
    ["a relative path", () => [startOf({ path: "relative/a" }), end], "EINVAL", /not absolute/],
    ["an empty path", () => [startOf({ path: "" }), end], "EINVAL", /empty/],
    [
      "a path longer than PATH_MAX",
      (dir) => [startOf({ path: `${dir}/${"d/".repeat(PATH_MAX)}a`, size: 1n }), data("a"), end],
      "ENAMETOOLONG",
      /ENAMETOOLONG/,
    ],
    [
      "a name longer than NAME_MAX",
      (dir) => [startOf({ path: `${dir}/${"n".repeat(NAME_MAX + 1)}`, size: 1n }), data("a"), end],
      "ENAMETOOLONG",
      /ENAMETOOLONG/,
    ],
    [
      "both a directory and a symlink",
      (dir) => [startOf({ path: `${dir}/a`, isDir: true, isSymlink: true, linkTarget: "x" }), end],
      "EINVAL",
      /both a directory and a symlink/,
    ],
    [
      "a symlink without a target",
      (dir) => [startOf({ path: `${dir}/a`, isSymlink: true }), end],
      "EINVAL",
      /needs a link_target/,
    ],
    [
      "mtime_nanos of a second or more",
      (dir) => [startOf({ path: `${dir}/a`, mtimeNanos: 1_000_000_000 }), end],
      "EINVAL",
      /not below one second/,
    ],
    [
      "data for a directory",
      (dir) => [startOf({ path: `${dir}/a`, isDir: true }), data("x"), end],
      "PROTOCOL",
      /data arrived for a directory/,
    ],
  ];
  for (const [name, requests, code, message] of cases) {
    it(`${name}: in-band ${code}, nothing written`, async () => {
      const response = await upload(requests(work));
      expect(response.success).toBe(false);
      expect(response.errorCode).toBe(code);
      expect(response.error).toMatch(message);
      expect(response.entriesWritten).toBe(0n);
      await expectNothingWritten();
    });
  }

  it("a failure after good entries keeps them and reports the count", async () => {
    const response = await upload([
      startOf({ path: `${work}/good`, size: 2n }),
      data("ok"),
      end,
      startOf({ path: `${work}/bad`, size: 5n }),
      data("12"),
      end,
    ]);
    expect(response).toMatchObject({ success: false, errorCode: "SIZE_MISMATCH", entriesWritten: 1n });
    expect(await readdir(work)).toEqual(["good"]);
  });
});

describe("CopyFromGuest and StatPath with bad paths", () => {
  const badPaths: Array<[string, () => string, string]> = [
    ["a NUL byte", () => `${work}/a\0b`, "EINVAL"],
    ["a relative path", () => "etc/passwd", "EINVAL"],
    ["an empty path", () => "", "EINVAL"],
    ["a path longer than PATH_MAX", () => `${work}/${"d/".repeat(PATH_MAX)}`, "ENAMETOOLONG"],
    ["a name longer than NAME_MAX", () => `${work}/${"n".repeat(NAME_MAX + 1)}`, "ENAMETOOLONG"],
  ];
  for (const [name, path, code] of badPaths) {
    it(`${name}: in-band ${code} from both`, async () => {
      const copy = await call("copyFromGuest", [{ path: path() }]);
      expect(copy.grpcStatus).toBe(Status.OK);
      expect(copy.responses).toHaveLength(1);
      const error = copy.responses[0]?.response;
      expect(error?.case).toBe("error");
      expect(error?.case === "error" && error.value.code).toBe(code);
      const stat = await call("statPath", [{ path: path() }]);
      expect(stat.grpcStatus).toBe(Status.OK);
      expect(stat.responses[0]).toMatchObject({ exists: false, errorCode: code });
      expect(stat.responses[0]?.error.length).toBeGreaterThan(5);
    });
  }

  it("a missing path: exists=false from StatPath, an ENOENT error from CopyFromGuest", async () => {
    const stat = await call("statPath", [{ path: `${work}/missing` }]);
    expect(stat.responses[0]).toMatchObject({ exists: false, error: "", errorCode: "" });
    const copy = await call("copyFromGuest", [{ path: `${work}/missing` }]);
    expect(copy.responses[0]?.response).toMatchObject({ case: "error", value: { code: "ENOENT" } });
  });

  it("names on disk that are not UTF-8: skipped with EILSEQ, the rest is copied", async () => {
    const tree = join(work, "tree");
    await mkdir(tree);
    await writeFile(Buffer.concat([Buffer.from(`${tree}/bad-`), Buffer.from([0xff, 0xfe]), Buffer.from(".txt")]), "x");
    await writeFile(Buffer.concat([Buffer.from(`${tree}/latin1-`), Buffer.from([0xe9])]), "y");
    await mkdir(Buffer.concat([Buffer.from(`${tree}/dir-`), Buffer.from([0xc3, 0x28])]));
    await writeFile(join(tree, "good.txt"), "good");
    const destination = join(work, "out");
    await mkdir(destination);
    const result = await client.copyFrom(tree, destination);
    expect(result).toMatchObject({ entries: 2, bytes: 4, partial: true, skippedCount: 3 });
    for (const skipped of result.skipped) {
      expect(skipped.code).toBe("EILSEQ");
      expect(skipped.reason).toMatch(/not valid UTF-8/);
    }
    expect(await readdir(join(destination, "tree"))).toEqual(["good.txt"]);
    // The names cannot even be asked about: a protobuf string is UTF-8, so the closest
    // spelling (with U+FFFD) names nothing.
    expect(await client.stat(`${tree}/bad-\ufffd\ufffd.txt`)).toEqual({ exists: false });
    expect((await client.stat(tree)).exists).toBe(true);
  });

  it("a FIFO as the root: refused at once, never opened (no hang)", async () => {
    const fifo = join(work, "fifo");
    execFileSync("mkfifo", [fifo]);
    const copy = await call("copyFromGuest", [{ path: fifo }]);
    expect(copy.responses[0]?.response).toMatchObject({ case: "error", value: { code: "SPECIAL_FILE" } });
  });

  it("the health service answers NOT_FOUND for a service it does not know", async () => {
    const result = await call("health", [{ service: "no.such.Service" }]);
    expectClearStatus(result, Status.NOT_FOUND);
  });
});
