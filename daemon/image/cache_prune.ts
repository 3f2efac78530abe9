/**
 * `image cache prune`: drops cached OCI blobs. Images are already built into
 * `rootfs.ext4`, so blobs only speed up re-pulls. Blobs still being downloaded (temp
 * files) are left alone.
 *
 * @module
 */

import { type Layout, ociBlobsDir } from "../../host/layout.ts";

/** What was (or, with `dryRun`, would be) freed. */
export interface PruneResult {
  dir: string;
  files: number;
  bytes: number;
}

/** Removes cached blobs; with `dryRun` only counts them. */
export async function pruneCache(layout: Layout, dryRun: boolean): Promise<PruneResult> {
  const dir = ociBlobsDir(layout);
  let files = 0;
  let bytes = 0;
  let entries: Deno.DirEntry[] = [];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  for (const e of entries) {
    if (!e.isFile || !/^[0-9a-f]{64}$/.test(e.name)) continue;
    const path = `${dir}/${e.name}`;
    const info = await Deno.lstat(path).catch(() => undefined);
    if (!info) continue;
    files++;
    bytes += info.size;
    if (!dryRun) await Deno.remove(path).catch(() => {});
  }
  return { dir, files, bytes };
}
