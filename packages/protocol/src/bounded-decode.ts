// Decoding what a peer sent, within bounds that hold before any object is built.
//
// protobuf-es decodes a whole message before the caller sees any of it, and the caller's
// own checks (path safety, entry counts) come after. Two shapes of message cost far more
// memory decoded than on the wire: a field the schema does not know is kept as an entry
// in $unknown (a 16 MiB message of them took 913 MiB of heap), and a repeated message
// field builds an object per entry (16 MiB of empty batch entries, 762 MiB). A guest must
// not be able to do that to its host with one message. So unknown fields are skipped,
// not kept, and the entries of a batch (a message field whose message is one repeated
// message field, like CopyFromGuestBatch) are counted on the wire first.
//
// A decoded message must also cost only what it keeps. protobuf-es returns each `bytes`
// value as a view into the received message, so keeping one byte of it keeps the whole
// message alive: a guest that padded each 1-byte stdout message with 8 MiB of unknown
// fields (skipped, as above) made run() keeping 100 bytes peak at 881 MiB. So, in every
// message type, bytes values that do not fill their (large) message are copied out
// before any caller sees them (ownBytes); file data and command output, CHUNK_SIZE
// chunks in messages of their own, stay the views they were, with no copy. Strings need
// nothing here: protobuf-es builds each one with TextDecoder or String.fromCharCode, a
// string of its own that keeps nothing of the message alive (test/bounded-decode.test.ts
// measures it). How much of a long string a receiver keeps is its own business: cutText.
import { type DescField, type DescMessage, fromBinary, type MessageShape, ScalarType } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** Where a message's lists of entries are: the field holding the list, and the list's field in it. */
interface ListPath {
  outer: number;
  inner: number;
}

/**
 * A deserializer for `schema` that refuses (throws) a message with more than
 * `maxEntries` entries in any of its batch fields, drops unknown fields, and returns
 * bytes values that keep alive at most twice the data of their message (or 8 KiB).
 */
export function createMessageDeserializer<Desc extends DescMessage>(
  schema: Desc,
  maxEntries: number,
): (bytes: Uint8Array) => MessageShape<Desc> {
  const lists = listPaths(schema);
  return (bytes) => {
    for (const path of lists) {
      const count = countEntries(bytes, path);
      if (count > maxEntries) {
        throw new Error(`${schema.typeName}: ${count} entries in one message, more than the ${maxEntries} allowed`);
      }
    }
    const message = fromBinary(schema, bytes, { readUnknownFields: false });
    ownBytes(message as unknown as Fields, schema, bytes);
    return message;
  };
}

type Fields = Record<string | number, unknown>;

/** Where a bytes value of a decoded message sits: `holder[key]`. */
interface BytesSlot {
  holder: Fields;
  key: string | number;
  value: Uint8Array;
}

// The bytes values of a message are views into `received`, and keep alive all the memory
// under it. They stay views when that memory is small: no bigger than a slab of Node's
// buffer pool (8 KiB), where grpc-js puts every message under 4 KiB, so that the many
// small messages of interactive output cost nothing more (a copy of its own would take
// more memory per value than the slab does). They stay views too when they fill at least
// half of it: bulk data (file chunks, command output, a full batch of small files) is
// never copied, and keeping any of it keeps alive at most twice the data the message
// carried. Otherwise (a large message mostly made of other fields, or padded) they are
// copied, all of them into one new buffer: one allocation per message, however many.
function ownBytes(message: Fields, schema: DescMessage, received: Uint8Array): void {
  const held = received.buffer.byteLength;
  if (held <= Buffer.poolSize) return;
  const slots: BytesSlot[] = [];
  collectBytes(message, schema, slots);
  if (slots.length === 0) return;
  let total = 0;
  for (const { value } of slots) total += value.byteLength;
  if (total * 2 >= held) return;
  // Memory of its own (never a slice of Node's pool, which holds other data); Buffers
  // (what grpc-js passes) give Buffers, as protobuf-es's views of them are.
  const store = Buffer.isBuffer(received) ? Buffer.allocUnsafeSlow(total) : new Uint8Array(total);
  let offset = 0;
  for (const { holder, key, value } of slots) {
    store.set(value, offset);
    holder[key] = store.subarray(offset, offset + value.byteLength);
    offset += value.byteLength;
  }
}

function collectBytes(message: Fields, schema: DescMessage, slots: BytesSlot[]): void {
  for (const field of fieldsWithBytes(schema)) {
    if (field.oneof) {
      const selected = message[field.oneof.localName] as Fields;
      if (selected.case === field.localName) collectValue(field, selected, "value", slots);
    } else {
      collectValue(field, message, field.localName, slots);
    }
  }
}

function collectValue(field: DescField, holder: Fields, key: string | number, slots: BytesSlot[]): void {
  const value = holder[key];
  switch (field.fieldKind) {
    case "scalar":
      slots.push({ holder, key, value: value as Uint8Array });
      return;
    case "message":
      if (value !== undefined) collectBytes(value as Fields, field.message, slots);
      return;
    case "list": {
      const list = value as unknown[];
      for (let i = 0; i < list.length; i++) {
        if (field.listKind === "message") collectBytes(list[i] as Fields, field.message, slots);
        else slots.push({ holder: list as unknown as Fields, key: i, value: list[i] as Uint8Array });
      }
      return;
    }
    case "map": {
      const map = value as Fields;
      for (const entry of Object.keys(map)) {
        if (field.mapKind === "message") collectBytes(map[entry] as Fields, field.message, slots);
        else slots.push({ holder: map, key: entry, value: map[entry] as Uint8Array });
      }
      return;
    }
    default:
      return;
  }
}

// The fields of each message type through which a bytes value can be reached.
const bytesFields = new WeakMap<DescMessage, DescField[]>();

function fieldsWithBytes(schema: DescMessage): DescField[] {
  let fields = bytesFields.get(schema);
  if (fields === undefined) {
    fields = schema.fields.filter((field) => reachesBytes(field, new Set([schema])));
    bytesFields.set(schema, fields);
  }
  return fields;
}

// `within`: the message types on the way here, so a recursive type ends the search.
function reachesBytes(field: DescField, within: Set<DescMessage>): boolean {
  const inMessage = (schema: DescMessage) => {
    if (within.has(schema)) return false;
    within.add(schema);
    const found = schema.fields.some((inner) => reachesBytes(inner, within));
    within.delete(schema);
    return found;
  };
  switch (field.fieldKind) {
    case "scalar":
      return field.scalar === ScalarType.BYTES;
    case "message":
      return inMessage(field.message);
    case "list":
      return field.listKind === "message" ? inMessage(field.message) : field.scalar === ScalarType.BYTES;
    case "map":
      return field.mapKind === "message" ? inMessage(field.message) : field.scalar === ScalarType.BYTES;
    default:
      return false;
  }
}

function listPaths(schema: DescMessage): ListPath[] {
  const paths: ListPath[] = [];
  for (const field of schema.fields) {
    if (field.fieldKind !== "message") continue;
    for (const inner of field.message.fields) {
      if (inner.fieldKind === "list" && inner.listKind === "message") {
        paths.push({ outer: field.number, inner: inner.number });
      }
    }
  }
  return paths;
}

// Entries of the list at `path`, over every occurrence of the outer field (protobuf
// merges repeated occurrences of a message field, so their lists add up).
function countEntries(bytes: Uint8Array, path: ListPath): number {
  let count = 0;
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo !== path.outer || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, fieldNo);
      continue;
    }
    const inner = new BinaryReader(reader.bytes());
    while (inner.pos < inner.len) {
      const [innerNo, innerType] = inner.tag();
      if (innerNo === path.inner) count += 1;
      inner.skip(innerType, innerNo);
    }
  }
  return count;
}
