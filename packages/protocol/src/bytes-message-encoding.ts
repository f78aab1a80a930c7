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
//
// A caller that copies the result before it serializes again can also let the encoder
// reuse one buffer: the grpc-js server copies each response into its HTTP/2 frame
// buffer synchronously (serializeMessage in server-interceptors), so the agent's
// responses need no allocation of their own, which took another third off the agent's
// CPU time per GiB sent. The grpc-js client frames requests asynchronously (and may keep
// them for a retry), so requests never reuse. A sender that reads its data from a file
// can instead read it into allocateBulkData's buffer, which keeps room in front for the
// tag and length: the serializer writes them there and returns a view, with no copy and
// no second allocation (about a third of the host's CPU per GiB of copyTo went to the
// allocation, copy and collection of that second buffer).
import { type DescMessage, type MessageShape, ScalarType, toBinary } from "@bufbuild/protobuf";
import { CHUNK_SIZE } from "./limits.js";

// Wire type 2: length-delimited.
const LENGTH_DELIMITED = 2;
// A reused buffer is kept only up to this size, so one rare large message does not pin
// memory for the agent's lifetime.
const MAX_REUSED_BYTES = 2 * CHUNK_SIZE;

// Room for a tag (field numbers below 16: one byte) and a length varint (five bytes
// cover any length below 2^35), rounded up.
const PREFIX_ROOM = 8;
// The buffers allocateBulkData made whose room is still unused. One use each: a second
// message over the same data must not rewrite a prefix an earlier one still relies on.
const unusedRoom = new WeakSet<ArrayBufferLike>();

/**
 * A buffer for up to `length` bytes of a bulk-data field (file data), with room in
 * front for the field's tag and length. Fill it (or the start of it, then subarray from
 * 0) and send it as the field's value, once, without changing it afterwards: the
 * serializer then puts the prefix in the room instead of copying. Anything else is
 * copied as usual.
 */
export function allocateBulkData(length: number): Buffer {
  // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool.
  const whole = Buffer.allocUnsafeSlow(PREFIX_ROOM + length);
  unusedRoom.add(whole.buffer);
  return whole.subarray(PREFIX_ROOM);
}

/** Options of createMessageSerializer. */
export interface MessageSerializerOptions {
  /**
   * Encode bulk-data messages into one buffer reused from call to call: the returned
   * Buffer is only valid until the next call. Only for a caller that copies it at once.
   */
  reuseBuffer?: boolean;
}

/** Serializes messages of `schema` to the Buffer grpc-js needs, bulk-data messages without extra copies. */
export function createMessageSerializer<Desc extends DescMessage>(
  schema: Desc,
  options: MessageSerializerOptions = {},
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
  let reused: Buffer | undefined;
  const allocate = (size: number): Buffer => {
    if (!options.reuseBuffer || size > MAX_REUSED_BYTES) return Buffer.allocUnsafe(size);
    if (reused === undefined || reused.byteLength < size) reused = Buffer.allocUnsafe(MAX_REUSED_BYTES);
    return reused.subarray(0, size);
  };
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
    const prefixLength = tag.byteLength + length.byteLength;
    if (data.byteOffset === PREFIX_ROOM && prefixLength <= PREFIX_ROOM && unusedRoom.delete(data.buffer)) {
      const out = Buffer.from(data.buffer, PREFIX_ROOM - prefixLength, prefixLength + data.byteLength);
      out.set(tag, 0);
      out.set(length, tag.byteLength);
      return out;
    }
    const out = allocate(prefixLength + data.byteLength);
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
