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
import { type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** Where a message's lists of entries are: the field holding the list, and the list's field in it. */
interface ListPath {
  outer: number;
  inner: number;
}

/**
 * A deserializer for `schema` that refuses (throws) a message with more than
 * `maxEntries` entries in any of its batch fields, and drops unknown fields.
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
    return fromBinary(schema, bytes, { readUnknownFields: false });
  };
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
