/**
 * Decoder for the LZ4 "legacy" frame, the format `lz4 -l` writes and Linux uses for
 * LZ4-compressed kernels (`CONFIG_KERNEL_LZ4`, `scripts/Makefile.lib` `cmd_lz4`). Debian's
 * cloud kernels are compressed this way, so banger decodes it in TypeScript instead of
 * requiring the `lz4` program on the user's host; npm's LZ4 packages read only the modern
 * frame (or are native addons). Pure: no `Deno.*` calls.
 *
 * Frame: the magic `0x184C2102` (LE), then blocks, each a 4-byte LE compressed size and
 * that many bytes of an independent LZ4 block that expands to at most 8 MiB. There is no
 * end marker: decoding stops at the end of input, at a size that cannot be a block (the
 * kernel build appends the uncompressed size, which is always too large), or at a repeated
 * magic (concatenated frames, skipped).
 *
 * Block format: https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md
 *
 * @module
 */

/** The legacy frame's magic number, little-endian on disk (`02 21 4c 18`). */
export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** Every block but the last expands to exactly this many bytes. */
const BLOCK_SIZE = 8 << 20;
/** `LZ4_compressBound(8 MiB)`: no valid compressed block is larger. */
const MAX_COMPRESSED_BLOCK = BLOCK_SIZE + Math.floor(BLOCK_SIZE / 255) + 16;

/** Raised by {@linkcode decompressLz4Legacy} for input that is not a valid frame. */
export class Lz4Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Lz4Error";
  }
}

/**
 * Decompresses an LZ4 legacy frame.
 *
 * @param input bytes starting at the frame magic; anything after the last block is
 *   ignored.
 * @param sizeHint the expected output size when known (the kernel appends it), which
 *   avoids growing the output.
 * @throws {Lz4Error} when the magic is missing or the first block is corrupt. A corrupt
 *   later block ends decoding instead, the way `lz4 -d` leaves its partial output: the
 *   caller validates what came out.
 */
export function decompressLz4Legacy(input: Uint8Array, sizeHint?: number): Uint8Array {
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  if (input.length < 4 || view.getUint32(0, true) !== LZ4_LEGACY_MAGIC) {
    throw new Lz4Error("Cannot decode LZ4 data: the legacy frame magic is missing");
  }
  // One spare block, so a correct hint never forces a copy before the (short) last block.
  let out = new Uint8Array((sizeHint !== undefined && sizeHint > 0 ? sizeHint : 0) + BLOCK_SIZE);
  let produced = 0;
  let at = 4;
  let blocks = 0;
  while (at + 4 <= input.length) {
    const size = view.getUint32(at, true);
    if (size === LZ4_LEGACY_MAGIC) {
      at += 4;
      continue;
    }
    if (size === 0 || size > MAX_COMPRESSED_BLOCK || at + 4 + size > input.length) break;
    if (out.length - produced < BLOCK_SIZE) out = grow(out, produced + BLOCK_SIZE);
    try {
      produced += decodeBlock(input, at + 4, at + 4 + size, out.subarray(produced));
    } catch (err) {
      if (blocks === 0) throw err;
      break;
    }
    blocks++;
    at += 4 + size;
  }
  return out.subarray(0, produced);
}

function grow(buffer: Uint8Array, atLeast: number): Uint8Array<ArrayBuffer> {
  const next = new Uint8Array(Math.max(atLeast, buffer.length * 2));
  next.set(buffer);
  return next;
}

/** Decodes one block of `src[start, end)` into `dst`; returns the bytes written. */
function decodeBlock(src: Uint8Array, start: number, end: number, dst: Uint8Array): number {
  let s = start;
  let d = 0;
  const corrupt = (why: string) => new Lz4Error(`Cannot decode LZ4 block: ${why}`);
  const length = (base: number): number => {
    let n = base;
    if (base !== 15) return n;
    let b: number;
    do {
      if (s >= end) throw corrupt("a length runs past the end of the block");
      b = src[s++];
      n += b;
    } while (b === 255);
    return n;
  };
  while (s < end) {
    const token = src[s++];
    const literals = length(token >>> 4);
    if (s + literals > end) throw corrupt("literals run past the end of the block");
    if (d + literals > dst.length) throw corrupt("output exceeds the block size");
    dst.set(src.subarray(s, s + literals), d);
    s += literals;
    d += literals;
    if (s >= end) break; // the last sequence carries literals only
    if (s + 2 > end) throw corrupt("a match offset is cut off");
    const offset = src[s] | (src[s + 1] << 8);
    s += 2;
    if (offset === 0 || offset > d) throw corrupt(`match offset ${offset} is out of range`);
    const match = length(token & 15) + 4;
    if (d + match > dst.length) throw corrupt("output exceeds the block size");
    let from = d - offset;
    if (offset >= match) {
      dst.copyWithin(d, from, from + match);
      d += match;
    } else {
      for (let i = 0; i < match; i++) dst[d++] = dst[from++];
    }
  }
  return d;
}
