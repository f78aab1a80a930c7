import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { allocateBulkData, createMessageSerializer } from "../src/bytes-message-encoding.js";
import {
  CopyFromGuestResponseSchema,
  CopyToGuestRequestSchema,
  ExecRequestSchema,
  ExecResponseSchema,
  StatPathRequestSchema,
} from "../src/index.js";

// Lengths around every varint boundary, and big enough to need a 4-byte length.
const LENGTHS = [0, 1, 127, 128, 16_383, 16_384, 262_144, 2_097_151, 2_097_152, 3_000_000];

function bytesOf(length: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let i = 0; i < length; i++) data[i] = (i * 31 + 7) & 0xff;
  return data;
}

describe("createMessageSerializer", () => {
  it("encodes bulk-data messages exactly as protobuf-es does", () => {
    const serializeRequest = createMessageSerializer(CopyToGuestRequestSchema);
    const serializeResponse = createMessageSerializer(CopyFromGuestResponseSchema);
    const serializeStdin = createMessageSerializer(ExecRequestSchema);
    const serializeOutput = createMessageSerializer(ExecResponseSchema);
    for (const length of LENGTHS) {
      const value = bytesOf(length);
      const messages = [
        [
          serializeRequest,
          CopyToGuestRequestSchema,
          create(CopyToGuestRequestSchema, { request: { case: "data", value } }),
        ],
        [
          serializeResponse,
          CopyFromGuestResponseSchema,
          create(CopyFromGuestResponseSchema, { response: { case: "data", value } }),
        ],
        [serializeStdin, ExecRequestSchema, create(ExecRequestSchema, { request: { case: "stdin", value } })],
        [serializeOutput, ExecResponseSchema, create(ExecResponseSchema, { response: { case: "stdout", value } })],
        [serializeOutput, ExecResponseSchema, create(ExecResponseSchema, { response: { case: "stderr", value } })],
      ] as const;
      for (const [serialize, schema, message] of messages) {
        // biome-ignore lint/suspicious/noExplicitAny: the tuple mixes schemas on purpose
        const fast = (serialize as (m: any) => Buffer)(message);
        // biome-ignore lint/suspicious/noExplicitAny: as above
        expect(Buffer.compare(fast, Buffer.from(toBinary(schema as any, message as any)))).toBe(0);
        expect(Buffer.isBuffer(fast)).toBe(true);
      }
    }
  });

  it("encodes data read into allocateBulkData's buffer in place, exactly as protobuf-es does", () => {
    const serialize = createMessageSerializer(CopyToGuestRequestSchema);
    for (const length of LENGTHS) {
      const buffer = allocateBulkData(length + 10);
      const value = buffer.subarray(0, length);
      value.set(bytesOf(length));
      const message = create(CopyToGuestRequestSchema, { request: { case: "data", value } });
      const encoded = serialize(message);
      expect(Buffer.compare(encoded, Buffer.from(toBinary(CopyToGuestRequestSchema, message)))).toBe(0);
      // In place: the encoding shares the data's memory.
      expect(encoded.buffer).toBe(value.buffer);
    }
  });

  it("uses a buffer's room once: a second message over the same data is copied, and both stay intact", () => {
    const serialize = createMessageSerializer(ExecRequestSchema);
    const buffer = allocateBulkData(300);
    buffer.set(bytesOf(300));
    const first = serialize(create(ExecRequestSchema, { request: { case: "stdin", value: buffer } }));
    const second = serialize(create(ExecRequestSchema, { request: { case: "stdin", value: buffer.subarray(0, 100) } }));
    expect(second.buffer).not.toBe(buffer.buffer);
    expect(Buffer.from(fromBinary(ExecRequestSchema, first).request.value as Uint8Array)).toEqual(
      Buffer.from(bytesOf(300)),
    );
    expect(Buffer.from(fromBinary(ExecRequestSchema, second).request.value as Uint8Array)).toEqual(
      Buffer.from(bytesOf(100)),
    );
  });

  it("copies data that does not start at the buffer's room", () => {
    const serialize = createMessageSerializer(CopyToGuestRequestSchema);
    const buffer = allocateBulkData(100);
    buffer.set(bytesOf(100));
    const before = Buffer.from(buffer.buffer).subarray(0, 8);
    const saved = Buffer.from(before);
    const encoded = serialize(
      create(CopyToGuestRequestSchema, { request: { case: "data", value: buffer.subarray(10) } }),
    );
    expect(encoded.buffer).not.toBe(buffer.buffer);
    expect(Buffer.from(fromBinary(CopyToGuestRequestSchema, encoded).request.value as Uint8Array)).toEqual(
      Buffer.from(bytesOf(100).subarray(10)),
    );
    expect(Buffer.compare(before, saved)).toBe(0);
  });

  it("round-trips a chunk that is a view into a larger buffer", () => {
    const backing = bytesOf(1000);
    const value = backing.subarray(100, 900);
    const bytes = createMessageSerializer(CopyFromGuestResponseSchema)(
      create(CopyFromGuestResponseSchema, { response: { case: "data", value } }),
    );
    const decoded = fromBinary(CopyFromGuestResponseSchema, bytes);
    expect(decoded.response.case).toBe("data");
    expect(Buffer.compare(Buffer.from(decoded.response.value as Uint8Array), Buffer.from(value))).toBe(0);
  });

  it("leaves every other message to protobuf-es", () => {
    const serializeRequest = createMessageSerializer(ExecRequestSchema);
    const start = create(ExecRequestSchema, {
      request: { case: "start", value: { command: ["sh", "-c", "true"], env: { A: "1" }, tty: true } },
    });
    expect(Buffer.compare(serializeRequest(start), Buffer.from(toBinary(ExecRequestSchema, start)))).toBe(0);
    const exit = create(ExecResponseSchema, { response: { case: "exitCode", value: -1 } });
    expect(
      Buffer.compare(
        createMessageSerializer(ExecResponseSchema)(exit),
        Buffer.from(toBinary(ExecResponseSchema, exit)),
      ),
    ).toBe(0);
    const empty = create(CopyToGuestRequestSchema);
    expect(createMessageSerializer(CopyToGuestRequestSchema)(empty).byteLength).toBe(0);
    const stat = create(StatPathRequestSchema, { path: "/tmp", followLinks: true });
    expect(
      Buffer.compare(
        createMessageSerializer(StatPathRequestSchema)(stat),
        Buffer.from(toBinary(StatPathRequestSchema, stat)),
      ),
    ).toBe(0);
  });

  it("keeps unknown fields a newer peer sent", () => {
    // Field 99, varint 1: unknown to this schema, preserved by protobuf-es.
    const withUnknown = fromBinary(
      CopyToGuestRequestSchema,
      Uint8Array.from([0x12, 0x02, 0xaa, 0xbb, 0x98, 0x06, 0x01]),
    );
    const bytes = createMessageSerializer(CopyToGuestRequestSchema)(withUnknown);
    expect([...bytes]).toEqual([...toBinary(CopyToGuestRequestSchema, withUnknown)]);
    expect(bytes.byteLength).toBe(7);
  });
});

describe("createMessageSerializer with reuseBuffer", () => {
  const message = (value: Uint8Array) => create(ExecResponseSchema, { response: { case: "stdout", value } });

  it("encodes each message exactly, and hands out the same memory each time", () => {
    const serialize = createMessageSerializer(ExecResponseSchema, { reuseBuffer: true });
    const first = serialize(message(bytesOf(1000)));
    expect(Buffer.compare(first, Buffer.from(toBinary(ExecResponseSchema, message(bytesOf(1000)))))).toBe(0);
    const copy = Buffer.from(first);
    const second = serialize(message(new Uint8Array(1000).fill(9)));
    expect(second.buffer).toBe(first.buffer);
    expect(
      Buffer.compare(second, Buffer.from(toBinary(ExecResponseSchema, message(new Uint8Array(1000).fill(9))))),
    ).toBe(0);
    expect(Buffer.compare(copy, first)).not.toBe(0);
  });

  it("gives a message larger than the reused buffer memory of its own", () => {
    const serialize = createMessageSerializer(ExecResponseSchema, { reuseBuffer: true });
    const small = serialize(message(bytesOf(10)));
    const large = serialize(message(bytesOf(3_000_000)));
    expect(large.buffer).not.toBe(small.buffer);
    expect(Buffer.compare(large, Buffer.from(toBinary(ExecResponseSchema, message(bytesOf(3_000_000)))))).toBe(0);
  });
});
