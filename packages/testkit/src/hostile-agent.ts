// A guest agent that attacks the host. It is a real grpc-js server speaking
// guest.GuestService on a temp Unix socket, in its own process (so a test measuring the
// host's memory measures the host alone), and its CopyFromGuest sends one scripted
// attack, chosen per test. The host's copyFrom must refuse every one of them without
// writing outside its destination. Any scenario can also pad every message with
// unknown fields (`padding`), so that what the host keeps of a message is a sliver of
// what it received.
//
// This file is both the library side (startHostileAgent) and the server process: run
// as a script, it serves the scenario given as JSON in argv[2].
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CHUNK_SIZE,
  type CopyFromGuestHeaderSchema,
  type CopyFromGuestRequest,
  type CopyFromGuestResponse,
  CopyFromGuestResponseSchema,
  DECODED_ENTRIES_LIMIT,
  ErrorCode,
  guestServiceDefinition,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  MAX_MESSAGE_BYTES,
  SMALL_FILE_BYTES,
} from "@guestkit/protocol";
import {
  announceWhenBound,
  padded,
  type RunningScriptAgent,
  runIfMain,
  sendWhenWritable,
  startScriptAgent,
} from "./script-agent.js";

/** The attacks, by name; each one's description says what it sends. */
export const HOSTILE_SCENARIOS = {
  traversal: "a directory `root`, then a file `root/../../escaped`",
  "traversal-root": "a file `../escaped` as the very first entry",
  absolute: "a directory `root`, then a file at the absolute path `<outsideDir>/escaped`",
  "symlink-then-file": "`root`, a symlink `root/a -> <outsideDir>`, then a file `root/a/evil`",
  "inner-symlink-then-file":
    "`root`, `root/sub`, a symlink `root/a -> sub` (a harmless target), then a file `root/a/evil` through it",
  "through-existing-link":
    "`root`, then a file `root/a/evil`: for a destination where `root/a` already exists as a symlink",
  "link-escape": "`root`, `root/sub`, then a symlink `root/sub/l -> ../../escaped`",
  "link-chain": "`root`, `root/d`, a symlink `root/d/up -> ..` (inside), then `root/d/x -> up/../..`",
  "dir-over-link": "`root`, a symlink `root/d -> .`, then a directory `root/d` and a file `root/d/evil`",
  "nul-name": "`root`, then a file whose name contains a NUL byte",
  "empty-name": "`root`, then a file `root//x` (an empty name)",
  "foreign-root": "`root`, then a file `other/x` outside the copied tree",
  oversize: "a file whose header declares 16 bytes, followed by 32",
  undersize: "a file whose header declares 100 bytes, then 10 bytes and its `end`",
  endless: "a file whose header declares 1 MiB, then data forever",
  "endless-huge": "a file whose header declares 2^62 bytes, then data forever",
  "no-final": "`root`, a file `root/f`, its `end` without `final`, then the stream closes",
  "data-first": "data before any header",
  "only-final-end": "a final `end` and nothing else: no entry at all, not even the root",
  "far-future-mtime": "a file `root` of 4 bytes whose mtime is the year 10000 (253402300800), final end",
  "many-entries": "`root`, then `count` empty files `root/d<i/1000>/f<i>` in directories of 1000, then the final end",
  "shrunk-file":
    "`root`, `root/f` declaring 100 bytes, 10 bytes, a `skipped` for `root/f` (as the agent reports a file that shrank), its `end`, then `root/g`",
  "out-of-order":
    "`root`, `root/a` (mode 0555), `root/b`, then `root/a/late`: legal but out of order, after `root/a` was left",
  setuid: "`root` (mode 02775), `root/suid` (04755), `root/sgid` (02755), `root/both` (06755), final end",
  benign: "`root`, `root/file` (5 bytes), `root/link -> file`, final end: a well-behaved transfer",
  file: "a file `root` of `count` bytes in data messages of `chunkSize` bytes, then the final end",
  "giant-skipped": "a directory `root`, then `count` `skipped` entries whose path, reason and code are 4 MiB each",
  "batch-oversize": "a batch: `root`, then `root/f` declaring 4 bytes with 8 bytes of data",
  "batch-undersize": "a batch: `root`, then `root/f` declaring 100 bytes with 10 bytes of data",
  "batch-traversal": "a batch: `root`, then a file `root/../../escaped`",
  "batch-symlink-then-file": "a batch: `root`, a symlink `root/a -> <outsideDir>`, then a file `root/a/evil`",
  "batch-inner-symlink-then-file":
    "a batch: `root`, `root/sub`, a symlink `root/a -> sub` (a harmless target), then a file `root/a/evil` through it",
  "batch-large-file": "a batch: `root`, then a file `root/f` of SMALL_FILE_BYTES + 1 with all its data",
  "batch-too-many": "a batch of `root` and MAX_BATCH_ENTRIES empty files",
  "batch-flood": "a batch of DECODED_ENTRIES_LIMIT + 1 empty files: more than the host decodes at all",
  "batch-too-big": "a batch: `root`, then files of SMALL_FILE_BYTES each, MAX_BATCH_BYTES of data and more",
  "batch-in-entry": "a header for a file `root` of 4 bytes, then a batch before its data and `end`",
  "batch-dir-data": "a batch: a directory `root` with 4 bytes of data",
  "batch-benign": "a batch of `root`, `root/file` (5 bytes), `root/link -> file`, then a bare final end",
} as const;

/** The name of a hostile scenario. */
export type HostileScenario = keyof typeof HOSTILE_SCENARIOS;

/** What startHostileAgent needs. */
export interface HostileAgentOptions {
  scenario: HostileScenario;
  /** The directory the absolute-path and symlink attacks aim at (a sentinel dir the test watches). */
  outsideDir?: string;
  /** Entries for `many-entries`; default one million. */
  count?: number;
  /** Bytes per data message; default CHUNK_SIZE. */
  chunkSize?: number;
  /** Bytes of unknown fields added to every message; default 0. */
  padding?: number;
}

/** A running hostile agent. */
export type HostileAgent = RunningScriptAgent;

/** Path of this module, which is also the hostile agent's script. */
const SCRIPT = fileURLToPath(import.meta.url);

/** Starts a hostile agent for one scenario and resolves once it accepts connections. */
export async function startHostileAgent(options: HostileAgentOptions): Promise<HostileAgent> {
  const dir = mkdtempSync(join(tmpdir(), "guestkit-hostile-"));
  const socketPath = join(dir, "agent.sock");
  const config: ServeConfig = {
    socketPath,
    scenario: options.scenario,
    outsideDir: options.outsideDir ?? join(dir, "outside"),
    count: options.count ?? 1_000_000,
    chunkSize: options.chunkSize ?? CHUNK_SIZE,
    padding: options.padding ?? 0,
  };
  return startScriptAgent("hostile agent", SCRIPT, config, dir);
}

interface ServeConfig {
  socketPath: string;
  scenario: HostileScenario;
  outsideDir: string;
  count: number;
  chunkSize: number;
  padding: number;
}

type Message = MessageInitShape<typeof CopyFromGuestResponseSchema>;

const MTIME = 1_700_000_000n;

type HeaderFields = { isDir?: boolean; isSymlink?: boolean; linkTarget?: string; size?: bigint; mode?: number };

function headerValue(path: string, fields: HeaderFields = {}): MessageInitShape<typeof CopyFromGuestHeaderSchema> {
  const mode = fields.mode ?? (fields.isDir ? 0o755 : fields.isSymlink ? 0o777 : 0o644);
  return { path, mtime: MTIME, mtimeNanos: 500_000_000, ...fields, mode };
}

function header(path: string, fields: HeaderFields = {}): Message {
  return { response: { case: "header", value: headerValue(path, fields) } };
}

/** One batched entry: a header and (for a file) its data. */
type BatchItem = [path: string, fields?: HeaderFields, data?: Uint8Array];

function batch(...items: BatchItem[]): Message {
  const entries = items.map(([path, fields, data]) => ({
    header: headerValue(path, fields),
    ...(data ? { data } : {}),
  }));
  return { response: { case: "batch", value: { entries } } };
}

const DIR: HeaderFields = { isDir: true };
const bytes = (size: number) => Buffer.alloc(size, 0x61);

const dir = (path: string, mode?: number): Message => header(path, { isDir: true, ...(mode ? { mode } : {}) });
const link = (path: string, linkTarget: string): Message => header(path, { isSymlink: true, linkTarget });
const file = (path: string, size: number, mode?: number): Message =>
  header(path, { size: BigInt(size), ...(mode ? { mode } : {}) });
const data = (size: number, fill = 0x61): Message => ({
  response: { case: "data", value: Buffer.alloc(size, fill) },
});
const end = (final = false): Message => ({ response: { case: "end", value: { final } } });

/** The messages of a scenario, lazily: some never end. */
function* script(config: ServeConfig): Generator<Message> {
  const outside = config.outsideDir;
  switch (config.scenario) {
    case "traversal":
      yield* [dir("root"), end(), file("root/../../escaped", 4), data(4), end(true)];
      return;
    case "traversal-root":
      yield* [file("../escaped", 4), data(4), end(true)];
      return;
    case "absolute":
      yield* [dir("root"), end(), file(`${outside}/escaped`, 4), data(4), end(true)];
      return;
    case "symlink-then-file":
      yield* [dir("root"), end(), link("root/a", outside), end(), file("root/a/evil", 4), data(4), end(true)];
      return;
    case "inner-symlink-then-file":
      yield* [dir("root"), end(), dir("root/sub"), end(), link("root/a", "sub"), end()];
      yield* [file("root/a/evil", 4), data(4), end(true)];
      return;
    case "through-existing-link":
      yield* [dir("root"), end(), file("root/a/evil", 4), data(4), end(true)];
      return;
    case "link-escape":
      yield* [dir("root"), end(), dir("root/sub"), end(), link("root/sub/l", "../../escaped"), end(true)];
      return;
    case "link-chain":
      yield* [dir("root"), end(), dir("root/d"), end(), link("root/d/up", ".."), end()];
      yield* [link("root/d/x", "up/../.."), end(true)];
      return;
    case "dir-over-link":
      yield* [dir("root"), end(), link("root/d", "."), end(), dir("root/d"), end()];
      yield* [file("root/d/evil", 4), data(4), end(true)];
      return;
    case "nul-name":
      yield* [dir("root"), end(), file("root/x\0y", 4), data(4), end(true)];
      return;
    case "empty-name":
      yield* [dir("root"), end(), file("root//x", 4), data(4), end(true)];
      return;
    case "foreign-root":
      yield* [dir("root"), end(), file("other/x", 4), data(4), end(true)];
      return;
    case "oversize":
      yield* [file("root", 16), data(32), end(true)];
      return;
    case "undersize":
      yield* [file("root", 100), data(10), end(true)];
      return;
    case "endless":
    case "endless-huge":
      yield file("root", config.scenario === "endless" ? 1024 * 1024 : 2 ** 62);
      for (;;) yield data(config.chunkSize);
    case "no-final":
      yield* [dir("root"), end(), file("root/f", 4), data(4), end(false)];
      return;
    case "data-first":
      yield* [data(4), file("root", 4), data(4), end(true)];
      return;
    case "only-final-end":
      yield end(true);
      return;
    case "far-future-mtime":
      yield { response: { case: "header", value: { ...headerValue("root", { size: 4n }), mtime: 253_402_300_800n } } };
      yield* [data(4), end(true)];
      return;
    case "many-entries": {
      yield dir("root");
      yield end();
      for (let i = 0; i < config.count; i += 1) {
        if (i % 1000 === 0) {
          yield dir(`root/d${i / 1000}`);
          yield end();
        }
        yield file(`root/d${Math.floor(i / 1000)}/f${i}`, 0);
        yield end();
      }
      yield end(true);
      return;
    }
    case "shrunk-file":
      yield* [dir("root"), end(), file("root/f", 100), data(10)];
      yield {
        response: { case: "skipped", value: { path: "root/f", code: ErrorCode.SIZE_MISMATCH, reason: "shrank" } },
      };
      yield* [end(), file("root/g", 2), data(2), end(true)];
      return;
    case "out-of-order":
      yield* [dir("root"), end(), dir("root/a", 0o555), end(), dir("root/b"), end(), file("root/a/late", 4)];
      yield* [data(4), end(true)];
      return;
    case "setuid":
      yield* [dir("root", 0o2775), end(), file("root/suid", 4, 0o4755), data(4), end()];
      yield* [file("root/sgid", 4, 0o2755), data(4), end(), file("root/both", 4, 0o6755), data(4), end(true)];
      return;
    case "benign":
      yield* [dir("root"), end(), file("root/file", 5), data(5), end(), link("root/link", "file"), end(true)];
      return;
    case "file":
      yield file("root", config.count);
      for (let sent = 0; sent < config.count; sent += config.chunkSize) {
        yield data(Math.min(config.chunkSize, config.count - sent));
      }
      yield end(true);
      return;
    case "giant-skipped": {
      yield* [dir("root"), end()];
      const text = (letter: string) => letter.repeat(4 * 1024 * 1024);
      for (let i = 0; i < config.count; i += 1) {
        yield {
          response: { case: "skipped", value: { path: `root/${text("p")}`, reason: text("r"), code: text("c") } },
        };
      }
      yield end(true);
      return;
    }
    case "batch-oversize":
      yield* [batch(["root", DIR], ["root/f", { size: 4n }, bytes(8)]), end(true)];
      return;
    case "batch-undersize":
      yield* [batch(["root", DIR], ["root/f", { size: 100n }, bytes(10)]), end(true)];
      return;
    case "batch-traversal":
      yield* [batch(["root", DIR], ["root/../../escaped", { size: 4n }, bytes(4)]), end(true)];
      return;
    case "batch-symlink-then-file":
      yield batch(
        ["root", DIR],
        ["root/a", { isSymlink: true, linkTarget: outside }],
        ["root/a/evil", { size: 4n }, bytes(4)],
      );
      yield end(true);
      return;
    case "batch-inner-symlink-then-file":
      yield batch(
        ["root", DIR],
        ["root/sub", DIR],
        ["root/a", { isSymlink: true, linkTarget: "sub" }],
        ["root/a/evil", { size: 4n }, bytes(4)],
      );
      yield end(true);
      return;
    case "batch-large-file":
      yield* [batch(["root", DIR], ["root/f", { size: BigInt(SMALL_FILE_BYTES + 1) }, bytes(SMALL_FILE_BYTES + 1)])];
      yield end(true);
      return;
    case "batch-too-many": {
      const items: BatchItem[] = Array.from({ length: MAX_BATCH_ENTRIES }, (_, i) => [`root/f${i}`]);
      yield* [batch(["root", DIR], ...items), end(true)];
      return;
    }
    case "batch-flood": {
      const items: BatchItem[] = Array.from({ length: DECODED_ENTRIES_LIMIT + 1 }, (_, i) => [`root/f${i}`]);
      yield* [batch(...items), end(true)];
      return;
    }
    case "batch-too-big": {
      const count = Math.ceil(MAX_BATCH_BYTES / SMALL_FILE_BYTES) + 1;
      const items: BatchItem[] = Array.from({ length: count }, (_, i) => [
        `root/f${i}`,
        { size: BigInt(SMALL_FILE_BYTES) },
        bytes(SMALL_FILE_BYTES),
      ]);
      yield* [batch(["root", DIR], ...items), end(true)];
      return;
    }
    case "batch-in-entry":
      yield* [file("root", 4), batch(["other", DIR]), data(4), end(true)];
      return;
    case "batch-dir-data":
      yield* [batch(["root", DIR, bytes(4)]), end(true)];
      return;
    case "batch-benign":
      yield batch(
        ["root", DIR],
        ["root/file", { size: 5n }, bytes(5)],
        ["root/link", { isSymlink: true, linkTarget: "file" }],
      );
      yield end(true);
      return;
  }
}

async function serve(config: ServeConfig): Promise<void> {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });
  const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>) =>
    callback({ code: grpc.status.UNIMPLEMENTED, details: "the hostile agent only attacks CopyFromGuest" });
  const copyFromGuest = async (call: grpc.ServerWritableStream<CopyFromGuestRequest, CopyFromGuestResponse>) => {
    call.on("error", () => undefined);
    for (const message of script(config)) {
      const response = padded(create(CopyFromGuestResponseSchema, message), config.padding);
      if (!(await sendWhenWritable(call, response))) return;
    }
    call.end();
  };
  server.addService(
    guestServiceDefinition as unknown as grpc.ServiceDefinition,
    {
      copyFromGuest,
      copyToGuest: unimplemented,
      statPath: unimplemented,
      exec: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
        call.destroy(Object.assign(new Error("unimplemented"), { code: grpc.status.UNIMPLEMENTED })),
    } as unknown as grpc.UntypedServiceImplementation,
  );
  await announceWhenBound("hostile agent", server, config.socketPath);
}

runIfMain("hostile agent", SCRIPT, serve);
