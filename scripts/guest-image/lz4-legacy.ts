// Decoder for the LZ4 "legacy" frame the kernel build uses for an LZ4 bzImage payload
// (Debian's cloud kernel). Node has no LZ4, and this small decoder keeps the image
// build free of tools beyond Debian's packaging ones.

const LEGACY_MAGIC = 0x184c2102;

/** Decompresses a legacy LZ4 frame whose output is exactly `size` bytes. */
export function decompressLz4Legacy(input: Buffer, size: number): Buffer {
  if (input.readUInt32LE(0) !== LEGACY_MAGIC) throw new Error("not an LZ4 legacy frame");
  const out = Buffer.allocUnsafe(size);
  let ip = 4;
  let op = 0;
  while (ip + 4 <= input.length && op < size) {
    const blockSize = input.readUInt32LE(ip);
    ip += 4;
    // Concatenated frames repeat the magic.
    if (blockSize === LEGACY_MAGIC) continue;
    if (ip + blockSize > input.length) throw new Error("LZ4: block runs past the end of the input");
    op = decodeBlock(input, ip, ip + blockSize, out, op);
    ip += blockSize;
  }
  if (op !== size) throw new Error(`LZ4: decoded ${op} bytes, expected ${size}`);
  return out;
}

function decodeBlock(src: Buffer, start: number, end: number, out: Buffer, outStart: number): number {
  let ip = start;
  let op = outStart;
  for (;;) {
    const token = src[ip++] as number;
    let literals = token >> 4;
    if (literals === 15) {
      let byte: number;
      do {
        byte = src[ip++] as number;
        literals += byte;
      } while (byte === 255);
    }
    if (op + literals > out.length || ip + literals > end) throw new Error("LZ4: literal run out of bounds");
    src.copy(out, op, ip, ip + literals);
    ip += literals;
    op += literals;
    if (ip >= end) return op;
    const offset = (src[ip] as number) | ((src[ip + 1] as number) << 8);
    ip += 2;
    let length = token & 15;
    if (length === 15) {
      let byte: number;
      do {
        byte = src[ip++] as number;
        length += byte;
      } while (byte === 255);
    }
    length += 4;
    if (offset === 0 || offset > op || op + length > out.length) throw new Error("LZ4: bad match");
    let from = op - offset;
    if (offset >= length) {
      out.copy(out, op, from, from + length);
      op += length;
    } else {
      // Overlapping match: it repeats the last `offset` bytes, byte by byte.
      for (let i = 0; i < length; i++) out[op++] = out[from++] as number;
    }
  }
}
