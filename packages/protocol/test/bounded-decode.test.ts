import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { createMessageDeserializer } from "../src/bounded-decode.js";
import {
  CHUNK_SIZE,
  CopyFromGuestResponseSchema,
  CopyToGuestRequestSchema,
  ExecRequestSchema,
  ExecResponseSchema,
  StatPathResponseSchema,
} from "../src/index.js";
import { inFreshHeap } from "./heap-probe.js";

function fromGuestBatch(count: number) {
  return create(CopyFromGuestResponseSchema, {
    response: {
      case: "batch",
      value: {
        entries: Array.from({ length: count }, (_, i) => ({
          header: { path: `root/f${i}`, mode: 0o644, size: 2n },
          data: Uint8Array.of(i & 0xff, 10),
        })),
      },
    },
  });
}

describe("createMessageDeserializer", () => {
  it("decodes what protobuf-es decodes, up to the bound", () => {
    const decode = createMessageDeserializer(CopyFromGuestResponseSchema, 100);
    const bytes = toBinary(CopyFromGuestResponseSchema, fromGuestBatch(100));
    expect(decode(bytes)).toEqual(fromBinary(CopyFromGuestResponseSchema, bytes));
  });

  it("refuses a batch with more entries than the bound, naming the count, before decoding it", () => {
    const decode = createMessageDeserializer(CopyFromGuestResponseSchema, 100);
    const bytes = toBinary(CopyFromGuestResponseSchema, fromGuestBatch(101));
    expect(() => decode(bytes)).toThrow(
      "guest.CopyFromGuestResponse: 101 entries in one message, more than the 100 allowed",
    );
  });

  it("adds up the entries of a batch field that occurs several times (protobuf merges them)", () => {
    const decode = createMessageDeserializer(CopyToGuestRequestSchema, 5);
    const part = (n: number) =>
      toBinary(
        CopyToGuestRequestSchema,
        create(CopyToGuestRequestSchema, {
          request: { case: "batch", value: { entries: Array.from({ length: n }, () => ({ start: { path: "x" } })) } },
        }),
      );
    expect(decode(Buffer.concat([part(3), part(2)])).request.case).toBe("batch");
    expect(() => decode(Buffer.concat([part(3), part(3)]))).toThrow(/6 entries in one message/);
  });

  it("a flood of empty entries is refused without building them", () => {
    // 16 MiB of empty entries: about 8 million objects had it been decoded.
    const field = 6; // CopyFromGuestResponse.batch
    const inner = new BinaryWriter();
    for (let i = 0; i < 8 * 1024 * 1024 - 8; i++) inner.tag(1, WireType.LengthDelimited).uint32(0);
    const bytes = new BinaryWriter().tag(field, WireType.LengthDelimited).bytes(inner.finish()).finish();
    const heapBefore = process.memoryUsage().heapUsed;
    expect(() => createMessageDeserializer(CopyFromGuestResponseSchema, 4096)(bytes)).toThrow(/entries in one message/);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
  });

  it("drops fields the schema does not know instead of keeping them", () => {
    const writer = new BinaryWriter();
    for (let i = 0; i < 100_000; i++) writer.tag(1000 + (i % 50), WireType.Varint).uint32(i);
    writer.tag(1, WireType.Varint).bool(true);
    const decoded = createMessageDeserializer(StatPathResponseSchema, 10)(writer.finish());
    expect(decoded.exists).toBe(true);
    expect((decoded as { $unknown?: unknown[] }).$unknown ?? []).toEqual([]);
  });
});

// How grpc-js hands a message to the deserializer: gathered into a buffer of its own,
// behind the 5-byte gRPC prefix.
function received(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafeSlow(5 + message.byteLength);
  framed.set(message, 5);
  return framed.subarray(5);
}

// `message` followed by `bytes` of a field no schema knows.
function padded(message: Uint8Array, bytes: number): Uint8Array {
  const writer = new BinaryWriter();
  writer.raw(message);
  writer.tag(9999, WireType.LengthDelimited).bytes(new Uint8Array(bytes));
  return writer.finish();
}

describe("bytes values of a decoded message", () => {
  it("stay views of the message when they fill it: bulk data is never copied", () => {
    const chunk = Buffer.alloc(CHUNK_SIZE, 7);
    const output = received(
      toBinary(ExecResponseSchema, create(ExecResponseSchema, { response: { case: "stdout", value: chunk } })),
    );
    const decodedOutput = createMessageDeserializer(ExecResponseSchema, 10)(output).response;
    expect(decodedOutput.case).toBe("stdout");
    expect(decodedOutput.value instanceof Uint8Array && decodedOutput.value.buffer).toBe(output.buffer);

    const upload = received(
      toBinary(CopyToGuestRequestSchema, create(CopyToGuestRequestSchema, { request: { case: "data", value: chunk } })),
    );
    const decodedUpload = createMessageDeserializer(CopyToGuestRequestSchema, 10)(upload).request;
    expect(decodedUpload.value instanceof Uint8Array && decodedUpload.value.buffer).toBe(upload.buffer);

    // A full batch of small files: their data is most of the message.
    const files = create(CopyFromGuestResponseSchema, {
      response: {
        case: "batch",
        value: {
          entries: Array.from({ length: 200 }, (_, i) => ({
            header: { path: `root/f${i}`, mode: 0o644, size: 1024n },
            data: Buffer.alloc(1024, i),
          })),
        },
      },
    });
    const batch = received(toBinary(CopyFromGuestResponseSchema, files));
    const decodedBatch = createMessageDeserializer(CopyFromGuestResponseSchema, 1024)(batch).response;
    expect(decodedBatch.case).toBe("batch");
    if (decodedBatch.case !== "batch") return;
    for (const entry of decodedBatch.value.entries) expect(entry.data.buffer).toBe(batch.buffer);
  });

  it("are copied out of a message padded with unknown fields, holding only their own bytes", () => {
    const cases = [
      [ExecResponseSchema, create(ExecResponseSchema, { response: { case: "stderr", value: Uint8Array.of(1) } })],
      [ExecRequestSchema, create(ExecRequestSchema, { request: { case: "stdin", value: Uint8Array.of(1) } })],
      [
        CopyToGuestRequestSchema,
        create(CopyToGuestRequestSchema, { request: { case: "data", value: Uint8Array.of(1) } }),
      ],
      [
        CopyFromGuestResponseSchema,
        create(CopyFromGuestResponseSchema, { response: { case: "data", value: Uint8Array.of(1) } }),
      ],
      [CopyFromGuestResponseSchema, fromGuestBatch(3)],
      [
        CopyToGuestRequestSchema,
        create(CopyToGuestRequestSchema, {
          request: { case: "batch", value: { entries: [{ start: { path: "/a" }, data: Uint8Array.of(1, 2) }] } },
        }),
      ],
    ] as const;
    for (const [schema, message] of cases) {
      // biome-ignore lint/suspicious/noExplicitAny: the list mixes schemas on purpose
      const bytes = received(padded(toBinary(schema as any, message as any), 1024 * 1024));
      // biome-ignore lint/suspicious/noExplicitAny: as above
      const decoded = createMessageDeserializer(schema as any, 10)(bytes);
      // biome-ignore lint/suspicious/noExplicitAny: as above
      expect(decoded).toEqual(fromBinary(schema as any, bytes, { readUnknownFields: false }));
      const values = bytesValues(decoded);
      expect(values.length).toBeGreaterThan(0);
      const total = values.reduce((sum, value) => sum + value.byteLength, 0);
      for (const value of values) expect(value.buffer.byteLength).toBe(total);
    }
  });

  it("of a small message in Node's buffer pool are left there: they keep at most its 8 KiB slab alive", () => {
    const bytes = Buffer.from(
      toBinary(
        ExecResponseSchema,
        create(ExecResponseSchema, { response: { case: "stdout", value: Uint8Array.of(1) } }),
      ),
    );
    expect(bytes.buffer.byteLength).toBe(Buffer.poolSize);
    const decoded = createMessageDeserializer(ExecResponseSchema, 10)(bytes).response;
    expect(decoded.value instanceof Uint8Array && decoded.value.buffer).toBe(bytes.buffer);
  });
});

// Every Uint8Array anywhere in a decoded message.
function bytesValues(value: unknown): Uint8Array[] {
  if (value instanceof Uint8Array) return [value];
  if (typeof value !== "object" || value === null) return [];
  return Object.values(value).flatMap(bytesValues);
}

describe("what decoded messages keep alive, measured", () => {
  // 50 messages of 4 MiB, each a few bytes of data or text padded with unknown fields,
  // every decoded message kept: after a full GC, live memory grows by what they hold
  // (and the last message, which V8 may not have let go of yet), or by 200 MiB if they
  // hold on to what they were decoded from.
  const growth = (decode: string, message: string) =>
    inFreshHeap<number>(`
      const varint = (n) => { const out = []; while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80); } out.push(n); return Buffer.from(out); };
      const field = (number, bytes) => Buffer.concat([varint(number * 8 + 2), varint(bytes.length), bytes]);
      const received = (message) => {
        const framed = Buffer.allocUnsafeSlow(5 + message.length);
        message.copy(framed, 5);
        return framed.subarray(5);
      };
      const padding = field(9999, Buffer.alloc(4 * 1024 * 1024));
      const before = await live();
      const kept = [];
      for (let i = 0; i < 50; i++) {
        const bytes = received(Buffer.concat([${message}, padding]));
        kept.push(${decode});
      }
      report(((await live()) - before) / (1024 * 1024));
    `);
  const decodeExec = "protocol.guestServiceDefinition.exec.responseDeserialize(bytes)";
  const decodeStat = "protocol.guestServiceDefinition.statPath.responseDeserialize(bytes)";

  it("a byte of stdout holds a byte, not its message", async () => {
    const stdout = "field(1, Buffer.from([i]))";
    // The measure sees what a view keeps: protobuf-es's own decoding keeps every message.
    expect(await growth("bytes.subarray(2, 3)", stdout)).toBeGreaterThan(190);
    expect(await growth(decodeExec, stdout)).toBeLessThan(10);
  }, 60_000);

  it("decoded strings hold nothing of their message (protobuf-es builds strings of their own)", async () => {
    // StatPathResponse.error and .link_target: 1000 characters each, ASCII and not.
    const texts = `Buffer.concat([field(8, Buffer.from("e".repeat(999) + i)), field(5, Buffer.from("é".repeat(500) + i))])`;
    expect(await growth(decodeStat, texts)).toBeLessThan(10);
  }, 60_000);
});
