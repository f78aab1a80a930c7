import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { createMessageDeserializer } from "../src/bounded-decode.js";
import { CopyFromGuestResponseSchema, CopyToGuestRequestSchema, StatPathResponseSchema } from "../src/index.js";

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
