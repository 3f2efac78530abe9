/**
 * Turns a compressed x86 kernel (`vmlinuz`, a bzImage) into the uncompressed ELF
 * `vmlinux` that Firecracker needs and QEMU boots through PVH. A TypeScript port of the
 * method of Linux's `scripts/extract-vmlinux`: find a compression magic, decompress from
 * there, keep the first output that is a valid ELF. It first tries the exact payload the
 * bzImage header points at (boot protocol ≥ 2.08: `payload_offset`/`payload_length`),
 * then falls back to scanning for every magic.
 *
 * Decoders: LZ4 legacy frames in TypeScript (`_lz4.ts`: what Debian uses, and it keeps the
 * `lz4` program off the list of host requirements); gzip and zstd through `node:zlib`.
 * xz, bzip2, LZMA and LZO payloads are recognised and reported as unsupported. No npm
 * package extracts a vmlinux; this is the kernel's own script, ported.
 *
 * @module
 */

import { constants, inflateRawSync, zstdDecompressSync } from "node:zlib";
import { BangerError } from "../../host/errors.ts";
import { EM_X86_64, parseElf64, PT_LOAD, pvhEntry } from "./_elf.ts";
import { decompressLz4Legacy } from "./_lz4.ts";

/** A kernel image that cannot be turned into an ELF `vmlinux`. */
export class KernelImageError extends BangerError {}

/** How the kernel inside the image was compressed. */
export type KernelCompression = "none" | "lz4" | "gzip" | "zstd";

/** The result of {@linkcode extractVmlinux}. */
export interface ExtractedVmlinux {
  /** The ELF kernel: x86-64, `ET_EXEC`, every segment inside the file. */
  vmlinux: Uint8Array;
  /** How it was stored in the image. */
  compression: KernelCompression;
  /** Byte offset of the compressed stream in the image (0 for an ELF input). */
  offset: number;
  /** The PVH entry address, when the kernel has the Xen PVH note (needed by QEMU/FC). */
  pvhEntry?: number;
}

interface Format {
  name: string;
  magic: number[];
  decode?: (stream: Uint8Array, sizeHint?: number) => Uint8Array;
}

const FORMATS: Format[] = [
  { name: "gzip", magic: [0x1f, 0x8b, 0x08], decode: gunzipTolerant },
  { name: "xz", magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { name: "bzip2", magic: [0x42, 0x5a, 0x68] },
  { name: "lzma", magic: [0x5d, 0x00, 0x00, 0x00] },
  { name: "lzo", magic: [0x89, 0x4c, 0x5a, 0x4f] },
  { name: "lz4", magic: [0x02, 0x21, 0x4c, 0x18], decode: decompressLz4Legacy },
  { name: "zstd", magic: [0x28, 0xb5, 0x2f, 0xfd], decode: (s) => zstdDecompressSync(s) },
];

/**
 * Extracts the ELF `vmlinux` from a bzImage (or returns an ELF input unchanged).
 *
 * @throws {KernelImageError} when no supported compressed stream yields a valid x86-64
 *   ELF; the message lists the formats found.
 * @example
 * ```ts
 * const image = await Deno.readFile("boot/vmlinuz-6.1.0-56-cloud-amd64");
 * const { vmlinux, compression } = extractVmlinux(image); // compression: "lz4"
 * await Deno.writeFile("vmlinux", vmlinux);
 * ```
 */
export function extractVmlinux(image: Uint8Array): ExtractedVmlinux {
  if (isKernelElf(image)) return described(image, "none", 0);
  const payload = bzImagePayload(image);
  if (payload) {
    const format = FORMATS.find((f) => startsWith(image, payload.offset, f.magic));
    if (format?.decode) {
      const stream = image.subarray(payload.offset, payload.offset + payload.length);
      const hint = format.name === "lz4" ? appendedSize(stream) : undefined;
      const out = tryDecode(format, stream, hint);
      if (out) return described(out, format.name as KernelCompression, payload.offset);
    }
  }
  const seen = new Set<string>();
  for (const format of FORMATS) {
    for (const offset of findAll(image, format.magic)) {
      seen.add(format.name);
      if (!format.decode) continue;
      const out = tryDecode(format, image.subarray(offset));
      if (out) return described(out, format.name as KernelCompression, offset);
    }
  }
  const found = [...seen];
  throw new KernelImageError(
    `Cannot extract vmlinux from the kernel image: ${
      found.length === 0
        ? "no compressed kernel found"
        : `no valid x86-64 ELF in its ${found.join(", ")} stream(s)`
    }`,
    {
      code: "invalid_argument",
      hint: found.some((f) => !FORMATS.find((x) => x.name === f)?.decode)
        ? "only lz4, gzip and zstd compressed kernels are supported"
        : undefined,
    },
  );
}

function described(
  vmlinux: Uint8Array,
  compression: KernelCompression,
  offset: number,
): ExtractedVmlinux {
  const elf = parseElf64(vmlinux);
  const entry = elf ? pvhEntry(vmlinux, elf) : undefined;
  return { vmlinux, compression, offset, ...(entry !== undefined ? { pvhEntry: entry } : {}) };
}

function tryDecode(format: Format, stream: Uint8Array, hint?: number): Uint8Array | undefined {
  if (!format.decode) return undefined;
  try {
    const out = format.decode(stream, hint);
    return isKernelElf(out) ? out : undefined;
  } catch {
    return undefined; // a false-positive magic or a corrupt stream: try the next one
  }
}

/** x86-64 executable ELF with at least one loadable segment, all within the file. */
function isKernelElf(bytes: Uint8Array): boolean {
  const elf = parseElf64(bytes);
  return elf !== undefined && elf.machine === EM_X86_64 && elf.type === 2 &&
    elf.segments.some((s) => s.type === PT_LOAD);
}

/**
 * Where the compressed kernel sits, from the x86 boot protocol setup header
 * (Documentation/arch/x86/boot.rst): "HdrS" at 0x202, version at 0x206, `setup_sects` at
 * 0x1f1 (0 means 4), `payload_offset`/`payload_length` at 0x248/0x24c, relative to the
 * protected-mode code at `(setup_sects + 1) * 512`.
 */
function bzImagePayload(image: Uint8Array): { offset: number; length: number } | undefined {
  if (image.length < 0x250 || !startsWith(image, 0x202, [0x48, 0x64, 0x72, 0x53])) {
    return undefined;
  }
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (view.getUint16(0x206, true) < 0x208) return undefined;
  const setupSects = image[0x1f1] === 0 ? 4 : image[0x1f1];
  const offset = (setupSects + 1) * 512 + view.getUint32(0x248, true);
  const length = view.getUint32(0x24c, true);
  if (length === 0 || offset + length > image.length) return undefined;
  return { offset, length };
}

/** The uncompressed size the kernel build appends after an LZ4 stream (`size_append`). */
function appendedSize(stream: Uint8Array): number | undefined {
  if (stream.length < 8) return undefined;
  const size = new DataView(stream.buffer, stream.byteOffset + stream.length - 4, 4)
    .getUint32(0, true);
  return size > 0 && size < 1 << 30 ? size : undefined;
}

/** Decodes a gzip member and ignores whatever follows it (the rest of the bzImage). */
function gunzipTolerant(stream: Uint8Array): Uint8Array {
  const flags = stream[3];
  let at = 10;
  if (flags & 0x04) at += 2 + (stream[at] | (stream[at + 1] << 8)); // FEXTRA
  if (flags & 0x08) at = stream.indexOf(0, at) + 1; // FNAME
  if (flags & 0x10) at = stream.indexOf(0, at) + 1; // FCOMMENT
  if (flags & 0x02) at += 2; // FHCRC
  if (at <= 0 || at >= stream.length) throw new RangeError("truncated gzip header");
  return inflateRawSync(stream.subarray(at), { finishFlush: constants.Z_SYNC_FLUSH });
}

function startsWith(bytes: Uint8Array, at: number, magic: number[]): boolean {
  if (at < 0 || at + magic.length > bytes.length) return false;
  return magic.every((b, i) => bytes[at + i] === b);
}

function* findAll(bytes: Uint8Array, magic: number[]): Generator<number> {
  let at = bytes.indexOf(magic[0]);
  while (at !== -1) {
    if (startsWith(bytes, at, magic)) yield at;
    at = bytes.indexOf(magic[0], at + 1);
  }
}
