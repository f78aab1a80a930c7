// The serializer grpc-js calls for every message, with a short way for the messages
// that carry bulk data.
//
// File data and command output travel as messages that are nothing but one oneof set
// to a bytes field (CopyToGuestRequest.data, CopyFromGuestResponse.data,
// ExecRequest.stdin, ExecResponse.stdout/stderr). protobuf-es's writer grows a zeroed
// buffer by doubling and then slices it: for a 256 KiB chunk that is three allocations
// and two full copies, and in a 1 GiB transfer the garbage collector took about 40% of
// the sender's time (bench/, node --cpu-prof). Such a message's encoding is fixed by
// the protobuf spec (tag, length, bytes), so it is written directly: one allocation,
// one copy. Every other message, and any message carrying unknown fields, goes through
// protobuf-es unchanged.
import { type DescMessage, type MessageShape, ScalarType, toBinary } from "@bufbuild/protobuf";

// Wire type 2: length-delimited.
const LENGTH_DELIMITED = 2;

/** Serializes messages of `schema` to the Buffer grpc-js needs, bulk-data messages without extra copies. */
export function createMessageSerializer<Desc extends DescMessage>(
  schema: Desc,
): (message: MessageShape<Desc>) => Buffer {
  const fallback = (message: MessageShape<Desc>) => asBuffer(toBinary(schema, message));
  const oneof = schema.oneofs.length === 1 ? schema.oneofs[0] : undefined;
  // The short way is only exact when the oneof is all the message has.
  if (oneof === undefined || schema.fields.some((field) => field.oneof !== oneof)) return fallback;
  const bytesTags = new Map<string, Uint8Array>();
  for (const field of oneof.fields) {
    if (field.fieldKind === "scalar" && field.scalar === ScalarType.BYTES) {
      bytesTags.set(field.localName, varint(field.number * 8 + LENGTH_DELIMITED));
    }
  }
  if (bytesTags.size === 0) return fallback;
  return (message) => {
    const fields = message as unknown as Record<string, { case?: string; value?: unknown } | undefined> & {
      $unknown?: unknown[];
    };
    const selected = fields[oneof.localName];
    const tag = selected?.case === undefined ? undefined : bytesTags.get(selected.case);
    const data = selected?.value;
    if (tag === undefined || !(data instanceof Uint8Array) || (fields.$unknown?.length ?? 0) > 0) {
      return fallback(message);
    }
    const length = varint(data.byteLength);
    const out = Buffer.allocUnsafe(tag.byteLength + length.byteLength + data.byteLength);
    out.set(tag, 0);
    out.set(length, tag.byteLength);
    out.set(data, tag.byteLength + length.byteLength);
    return out;
  };
}

// grpc-js needs a real Buffer back from a serializer; a view over the same memory
// avoids copying the message once more.
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// Base-128 varint of a non-negative integer below 2^53 (message lengths and tags).
function varint(value: number): Uint8Array {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Uint8Array.from(bytes);
}
