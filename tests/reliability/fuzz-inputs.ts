// What the fuzzer throws at the agent: random bytes in every layer (socket, HTTP/2,
// gRPC framing, protobuf) and random but well-formed messages that ask for the wrong
// things. Everything is drawn from one seeded generator, so a failing run is replayed
// with its seed.
//
// The agent runs as root and does what it is told, so the structured messages are
// fenced: commands come from a fixed harmless list (a random name could be `halt`),
// written paths stay under a sandbox directory with no `..`, and symlink targets are
// plain sibling names, so nothing written through a link can land outside the sandbox.
// Raw random bytes cannot realistically spell a valid write outside it.
import type { RequestInit } from "@guestkit/testkit";

/** A small, fast, seedable PRNG (mulberry32). */
export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  bytes(length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i += 1) out[i] = this.int(256);
    return out;
  }

  /** A size that is usually small and sometimes large: what breaks parsers. */
  size(max: number): number {
    const roll = this.next();
    if (roll < 0.6) return this.int(Math.min(max, 64));
    if (roll < 0.9) return this.int(Math.min(max, 4096));
    return this.int(max);
  }

  /** A string with the characters parsers trip on: NUL, slashes, non-ASCII, lone surrogates. */
  text(maxLength: number): string {
    const alphabet = [
      "a",
      "b",
      "Z",
      "0",
      "-",
      "_",
      " ",
      "/",
      ".",
      "=",
      "\0",
      "\n",
      "é",
      "\u{1F600}",
      "\ud800",
      "%",
      "$",
    ];
    let out = "";
    const length = this.size(maxLength);
    for (let i = 0; i < length; i += 1) out += this.pick(alphabet);
    return out;
  }

  /** A file name with no `/` and never `.` or `..`. */
  name(): string {
    const alphabet = ["a", "b", "c", "Z", "0", "-", "_", " ", "é", "=", "\n"];
    let out = "";
    const length = 1 + this.int(this.chance(0.05) ? 300 : 12);
    for (let i = 0; i < length; i += 1) out += this.pick(alphabet);
    return `f${out}`;
  }

  /** An int64 as protobuf-es wants it, including the edges. */
  int64(): bigint {
    return this.pick([0n, 1n, -1n, 2n ** 62n, -(2n ** 63n), 2n ** 63n - 1n, BigInt(this.int(1 << 20))]);
  }

  uint32(): number {
    return this.pick([0, 1, 24, 80, 65535, 65536, 0xffffffff, this.int(0x100000000)]);
  }

  int32(): number {
    return this.pick([0, 1, -1, 2, 0x7fffffff, -0x80000000, this.int(100)]);
  }
}

/** Methods a raw call can be aimed at, known and unknown. */
export const RAW_PATHS = [
  "/guest.GuestService/Exec",
  "/guest.GuestService/CopyToGuest",
  "/guest.GuestService/CopyFromGuest",
  "/guest.GuestService/StatPath",
  "/grpc.health.v1.Health/Check",
  "/grpc.health.v1.Health/Watch",
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  "/guest.GuestService/Nope",
  "/",
] as const;

/** A raw request: headers and a body of frames, some of them lying. */
export function randomRawRequest(random: Random): {
  path: string;
  headers: Record<string, string>;
  body: Buffer[];
  endStream: boolean;
  resetAfterMs?: number;
} {
  const headers: Record<string, string> = {};
  if (random.chance(0.1)) headers["grpc-encoding"] = random.pick(["gzip", "deflate", "identity", "br", "x"]);
  if (random.chance(0.1)) headers["grpc-timeout"] = random.pick(["1m", "100n", "99999999H", "x", "-1S", "1S"]);
  if (random.chance(0.03)) headers["content-type"] = random.pick(["application/grpc+json", "text/plain", ""]);
  const body: Buffer[] = [];
  const frames = random.int(4);
  for (let i = 0; i < frames; i += 1) {
    const payload = random.bytes(random.size(8192));
    const prefix = Buffer.alloc(5);
    prefix.writeUInt8(random.chance(0.85) ? 0 : random.pick([1, 2, 0x80, 0xff]), 0);
    const lie = random.next();
    const declared =
      lie < 0.8
        ? payload.length
        : lie < 0.9
          ? random.int(payload.length + 1)
          : random.pick([payload.length + 1, 0xffffffff, 16 * 1024 * 1024 + 1, random.int(0x100000000)]);
    prefix.writeUInt32BE(declared, 1);
    // Sometimes the prefix alone, or cut in the middle.
    const whole = Buffer.concat([prefix, payload]);
    body.push(random.chance(0.05) ? whole.subarray(0, random.int(whole.length)) : whole);
  }
  return {
    path: random.chance(0.95) ? random.pick(RAW_PATHS) : `/${random.text(40)}`,
    headers,
    body,
    endStream: random.chance(0.8),
    ...(random.chance(0.2) ? { resetAfterMs: random.int(300) } : {}),
  };
}

/** Flips, inserts or removes a few bytes of a valid message: almost-right protobuf. */
export function mutate(random: Random, bytes: Uint8Array): Buffer {
  const out = Array.from(bytes);
  const edits = 1 + random.int(4);
  for (let i = 0; i < edits; i += 1) {
    const at = random.int(out.length + 1);
    const kind = random.int(3);
    if (kind === 0 && out.length > 0) out[Math.min(at, out.length - 1)] = random.int(256);
    else if (kind === 1) out.splice(at, 0, random.int(256));
    else out.splice(at, 1);
  }
  return Buffer.from(out);
}

type ExecInit = RequestInit<"exec">;
type UploadInit = RequestInit<"copyToGuest">;

/** Harmless argvs: a fixed list, never a random program name. */
function harmlessCommand(random: Random): string[] {
  return random.pick([
    ["true"],
    ["false"],
    ["cat"],
    ["sleep", "0.2"],
    ["sh", "-c", "echo out; echo err >&2"],
    // A background child that outlives the command briefly (it holds the output open).
    ["sh", "-c", "sleep 0.3 & echo bg"],
    ["head", "-c", "300000", "/dev/zero"],
    ["echo", random.text(50)],
    [`/nonexistent/${random.name()}`],
    [""],
    [],
  ]);
}

/** An Exec stream: usually a start (right or wrong), then random follow-ups. */
export function randomExecStream(random: Random): ExecInit[] {
  const messages: ExecInit[] = [];
  const start = (): ExecInit => ({
    request: {
      case: "start",
      value: {
        command: harmlessCommand(random),
        tty: random.chance(0.3),
        env: random.chance(0.3) ? { [random.text(10) || "E"]: random.text(20) } : { FUZZ: "1" },
        cwd: random.chance(0.6)
          ? ""
          : random.pick(["/", "/tmp", "relative", "/nonexistent", "/tmp\0x", random.text(20)]),
        timeoutSeconds: random.chance(0.2) ? random.int32() : random.pick([0, 1]),
        rows: random.chance(0.8) ? random.int(300) : random.uint32(),
        cols: random.chance(0.8) ? random.int(300) : random.uint32(),
        user: random.chance(0.6)
          ? ""
          : random.pick(["root", "nobody", "65534", "65534:65534", "no-such-user", "x\0", random.text(8)]),
      },
    },
  });
  if (random.chance(0.9)) messages.push(start());
  const more = random.int(6);
  for (let i = 0; i < more; i += 1) {
    const kind = random.int(6);
    if (kind === 0) messages.push({ request: { case: "stdin", value: random.bytes(random.size(100_000)) } });
    else if (kind === 1) messages.push({ request: { case: "stdinClose", value: {} } });
    else if (kind === 2)
      messages.push({ request: { case: "resize", value: { rows: random.uint32(), cols: random.uint32() } } });
    else if (kind === 3)
      messages.push({
        request: { case: "signal", value: { name: random.pick(["TERM", "SIGINT", "KILL", "HUP", "NOPE", "", "0"]) } },
      });
    else if (kind === 4) messages.push(start());
    else messages.push({});
  }
  return messages;
}

/** A CopyToGuest stream whose every path is inside `sandbox`. */
export function randomUploadStream(random: Random, sandbox: string): UploadInit[] {
  const messages: UploadInit[] = [];
  const path = () => {
    const depth = 1 + random.int(3);
    const parts = Array.from({ length: depth }, () => random.name());
    // Sometimes through a name that may already be a sibling symlink: still inside.
    return `${sandbox}/${parts.join("/")}${random.chance(0.05) ? "/" : ""}`;
  };
  const entries = 1 + random.int(4);
  for (let i = 0; i < entries; i += 1) {
    const isSymlink = random.chance(0.15);
    const isDir = !isSymlink && random.chance(0.2);
    const declared = random.chance(0.7) ? BigInt(random.size(200_000)) : random.int64();
    messages.push({
      request: {
        case: "start",
        value: {
          path: path(),
          mode: random.chance(0.5) ? 0 : random.int(0o10000),
          isDir,
          size: declared,
          mtime: random.chance(0.7) ? 0n : random.int64(),
          mtimeNanos: random.chance(0.8) ? 0 : random.uint32(),
          uid: random.chance(0.8) ? 0 : random.uint32(),
          gid: random.chance(0.8) ? 0 : random.uint32(),
          chown: random.chance(0.2),
          isSymlink,
          // A plain sibling name: a link made here never points out of the sandbox.
          linkTarget: isSymlink || random.chance(0.05) ? random.name() : "",
        },
      },
    });
    const chunks = random.int(4);
    for (let c = 0; c < chunks; c += 1) {
      const length = random.size(100_000);
      messages.push({ request: { case: "data", value: random.bytes(length) } });
    }
    if (random.chance(0.8)) messages.push({ request: { case: "end", value: {} } });
    if (random.chance(0.05)) messages.push({});
  }
  return messages;
}

/**
 * A path to read (stat or copy out): real, missing, special, malformed. `/` only for
 * stat: copying the whole file system out would just be slow, not interesting.
 */
export function randomReadPath(random: Random, sandbox: string, forCopy: boolean): string {
  return random.pick([
    forCopy ? "/etc" : "/",
    "/etc/hostname",
    "/proc/self/status",
    "/dev/null",
    "/dev/zero",
    sandbox,
    `${sandbox}/${random.name()}`,
    "",
    "relative",
    `/tmp/${"x".repeat(300)}`,
    `/${"d/".repeat(2100)}`,
    `/tmp\0/x`,
    random.text(30),
  ]);
}
