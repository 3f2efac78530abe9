/**
 * Folder-private: applies one cached layer blob through decompression, a DiffID hash
 * and the tar reader, turning low-level failures into {@linkcode LayerError}s that name
 * the layer.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { decompress } from "../archive/decompress.ts";
import { BangerError } from "../../host/errors.ts";
import { LayerError } from "../errors.ts";
import type { LayerApplier } from "./layers.ts";
import { readTar } from "../archive/tar.ts";

/**
 * Applies the layer blob at `path` (gzip, zstd or plain tar) to `applier`, verifying
 * the uncompressed bytes against `diffId` when the config gave one.
 *
 * @throws {LayerError} for undecodable, malformed, hostile or mismatching content.
 */
export async function applyLayerFile(
  applier: LayerApplier,
  path: string,
  digest: string,
  diffId: string | undefined,
  signal: AbortSignal,
): Promise<void> {
  const file = await Deno.open(path, { read: true });
  const hash = createHash("sha256");
  const tap = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      hash.update(chunk);
      controller.enqueue(chunk);
    },
  });
  try {
    const { stream } = await decompress(file.readable);
    await applier.apply(readTar(stream.pipeThrough(tap)), digest, signal);
  } catch (err) {
    if (signal.aborted || err instanceof LayerError) throw err;
    const code = err instanceof BangerError ? err.code : "invalid_argument";
    const why = err instanceof Error ? err.message : String(err);
    throw new LayerError(`Cannot apply layer "${digest}": ${why}`, { code, cause: err });
  }
  const actual = `sha256:${hash.digest("hex")}`;
  if (diffId !== undefined && actual !== diffId) {
    throw new LayerError(
      `Cannot apply layer "${digest}": its uncompressed content hashes to "${actual}", the config says "${diffId}"`,
      { code: "unavailable" },
    );
  }
}
