/**
 * Decompression by content, not by name: gzip (`1f 8b`) through `DecompressionStream`,
 * zstd (`28 b5 2f fd`) through `node:zlib`, anything else passed through as plain bytes.
 *
 * @module
 */

import { concatBytes } from "../../host/bytes.ts";
import { Duplex } from "node:stream";
import { createZstdDecompress } from "node:zlib";
import { TarError } from "../errors.ts";

/** The compression found at the start of a stream. */
export type Compression = "gzip" | "zstd" | "none";

/** A decompressed stream and the compression it had. */
export interface Decompressed {
  /** What the magic bytes said. */
  compression: Compression;
  /** The uncompressed bytes. */
  stream: ReadableStream<Uint8Array>;
}

const MAGIC_LENGTH = 6;

/**
 * Sniffs the first bytes of `input` and returns it decompressed. Note that neither
 * decoder detects every truncation: callers verify a digest of the compressed bytes
 * first (OCI blobs, bundles), and the tar reader refuses a stream that ends mid-entry.
 *
 * @throws {TarError} for xz and bzip2 streams, which are not supported.
 * @example
 * ```ts
 * const { stream } = await decompress((await Deno.open(path)).readable);
 * ```
 */
export async function decompress(input: ReadableStream<Uint8Array>): Promise<Decompressed> {
  const reader = input.getReader();
  const head: Uint8Array[] = [];
  let length = 0;
  while (length < MAGIC_LENGTH) {
    const { value, done } = await reader.read();
    if (done) break;
    head.push(value);
    length += value.length;
  }
  const prefix = head.length === 1 ? head[0] : concatBytes(head);
  const compression = sniff(prefix);
  const rejoined = new ReadableStream<Uint8Array>({
    start(controller) {
      if (prefix.length > 0) controller.enqueue(prefix);
    },
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  if (compression === "gzip") {
    const gunzip = new DecompressionStream("gzip") as unknown as TransformStream<
      Uint8Array,
      Uint8Array
    >;
    return { compression, stream: rejoined.pipeThrough(gunzip) };
  }
  if (compression === "zstd") {
    const zstd = Duplex.toWeb(createZstdDecompress()) as unknown as TransformStream<
      Uint8Array,
      Uint8Array
    >;
    return { compression, stream: rejoined.pipeThrough(zstd) };
  }
  return { compression, stream: rejoined };
}

function sniff(b: Uint8Array): Compression {
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return "gzip";
  if (b.length >= 4 && b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) {
    return "zstd";
  }
  const xz = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
  if (b.length >= 6 && xz.every((v, i) => b[i] === v)) {
    throw new TarError("Cannot decompress stream: xz compression is not supported", {
      code: "failed_precondition",
    });
  }
  if (b.length >= 3 && b[0] === 0x42 && b[1] === 0x5a && b[2] === 0x68) {
    throw new TarError("Cannot decompress stream: bzip2 compression is not supported", {
      code: "failed_precondition",
    });
  }
  return "none";
}
