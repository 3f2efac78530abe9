/**
 * Pulls an OCI image into a directory: reference → manifest (linux/amd64 from an index)
 * → config → layers (downloaded once into the shared blob cache, verified) → flattened
 * tree with an ownership map. The caller gives an empty staging directory and publishes
 * it; on failure or cancellation the directory is emptied and no partial blob is kept.
 *
 * @module
 */

import type { FetchFn } from "../http.ts";
import { LAYER_MEDIA_TYPES, LINUX_AMD64, MEDIA, selectFromIndex } from "./_manifest.ts";
import type { Descriptor, ImageManifest } from "./_manifest.ts";
import type { BlobCache } from "./blob_cache.ts";
import { OciError } from "../errors.ts";
import { type Credentials, loadDockerCredentials } from "./auth.ts";
import { formatImageRef, type ImageRef, parseImageRef } from "./ref.ts";
import { type FetchedManifest, RegistryClient } from "./registry.ts";
import { type ImageConfig, parseImageConfig } from "./_image_config.ts";
import { applyLayerFile } from "./_apply_layer.ts";
import { LayerApplier, type OwnershipMap, type SkippedEntry } from "./layers.ts";

export type { ImageConfig } from "./_image_config.ts";

/** Progress of a pull, reported as it happens. */
export type PullProgress =
  | { phase: "resolve"; ref: string }
  | {
    phase: "download";
    /** The blob. */
    digest: string;
    /** Bytes of this blob so far and in all. */
    blobDone: number;
    blobTotal: number;
    /** Bytes of every blob of the image so far and in all. */
    done: number;
    total: number;
  }
  | { phase: "extract"; digest: string; layer: number; layers: number };

/** Options for {@linkcode pullImage}. */
export interface PullOptions {
  /** The image, e.g. `debian:bookworm` or `127.0.0.1:5000/x/y@sha256:…`. */
  ref: string | ImageRef;
  /** An existing, empty directory that receives the flattened root filesystem. */
  destDir: string;
  /** The shared blob cache (one per process: `new BlobCache(ociBlobsDir(layout))`). */
  cache: BlobCache;
  /** Cancels the pull. */
  signal?: AbortSignal;
  /** Progress callback. */
  onProgress?: (progress: PullProgress) => void;
  /** Credentials to use instead of looking in Docker's config. */
  credentials?: Credentials;
  /** Docker `config.json` to read credentials from. @default {"$DOCKER_CONFIG/config.json" or "~/.docker/config.json"} */
  credentialsFile?: string;
  /** Use plain http (loopback registries always do). @default {false} */
  insecure?: boolean;
  /** Blobs downloaded at once. @default {3} */
  concurrency?: number;
  /** The fetch implementation. @default {globalThis.fetch} */
  fetch?: FetchFn;
  /** chown on disk as well as in the map. @default {Deno.uid() === 0} */
  chownOnDisk?: boolean;
  /** How far the image may expand (`LayerApplierOptions.maxBytes`, `maxEntries`). */
  limits?: { maxBytes?: number; maxEntries?: number };
}

/** A pulled, flattened image. */
export interface PullResult {
  /** The parsed reference. */
  ref: ImageRef;
  /** Digest the reference resolved to (an index's, when it names one). */
  digest: string;
  /** Digest of the linux/amd64 image manifest. */
  manifestDigest: string;
  /** What the image says to run. */
  config: ImageConfig;
  /** Guest path → uid, gid, mode, type as the layers said. */
  metadata: OwnershipMap;
  /** Device nodes and FIFOs that were not created. */
  skipped: SkippedEntry[];
  /** Bytes of regular-file content in `destDir` (each inode once). */
  contentBytes: number;
  /** Layer digests, base first. */
  layers: string[];
}

const MAX_INDEX_DEPTH = 4;

/**
 * Pulls `ref` for linux/amd64 and flattens it into `destDir`.
 *
 * @throws {OciError} for reference, registry, manifest and blob problems (`cancelled`
 *   when `signal` aborts), {@linkcode LayerError} for unsafe or malformed layers.
 * @example
 * ```ts
 * const result = await pullImage({
 *   ref: "docker.io/library/debian:bookworm",
 *   destDir: stagingDir,
 *   cache: new BlobCache(ociBlobsDir(layout)),
 *   signal,
 * });
 * result.config.cmd; // ["bash"]
 * ```
 */
export async function pullImage(options: PullOptions): Promise<PullResult> {
  const ref = typeof options.ref === "string" ? parseImageRef(options.ref) : options.ref;
  const name = formatImageRef(ref);
  const controller = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, controller.signal])
    : controller.signal;
  const downloads: Promise<unknown>[] = [];
  try {
    return await pullInto(ref, name, options, signal, downloads);
  } catch (err) {
    controller.abort();
    await Promise.allSettled(downloads);
    await emptyDir(options.destDir);
    if (options.signal?.aborted) {
      throw new OciError(`Cannot pull "${name}": the pull was cancelled`, {
        code: "cancelled",
        cause: err,
      });
    }
    throw err;
  }
}

async function pullInto(
  ref: ImageRef,
  name: string,
  options: PullOptions,
  signal: AbortSignal,
  downloads: Promise<unknown>[],
): Promise<PullResult> {
  options.onProgress?.({ phase: "resolve", ref: name });
  const credentials = options.credentials ??
    await loadDockerCredentials(ref.registry, { configFile: options.credentialsFile, signal });
  const client = new RegistryClient(ref, {
    insecure: options.insecure,
    credentials,
    fetch: options.fetch,
  });
  const top = await client.getManifest(ref.repository, ref.digest ?? ref.tag ?? "latest", {
    signal,
  });
  const { manifest, digest: manifestDigest } = await resolvePlatform(
    client,
    ref,
    name,
    top,
    signal,
  );
  checkManifest(manifest, name);
  using _held = options.cache.hold([manifest.config, ...manifest.layers].map((b) => b.digest));
  const fetchBlob = blobFetcher(client, ref, options, manifest, signal);
  const configPath = await fetchBlob(manifest.config);
  const config = parseImageConfig(await Deno.readFile(configPath), name);
  if (config.diffIds.length !== 0 && config.diffIds.length !== manifest.layers.length) {
    throw new OciError(
      `Cannot pull "${name}": the config lists ${config.diffIds.length} layers, the manifest ${manifest.layers.length}`,
      { code: "unavailable" },
    );
  }
  const paths = startDownloads(manifest.layers, fetchBlob, options.concurrency ?? 3, downloads);
  const applier = new LayerApplier(options.destDir, {
    chownOnDisk: options.chownOnDisk,
    ...options.limits,
  });
  for (const [i, layer] of manifest.layers.entries()) {
    const path = await paths[i];
    options.onProgress?.({
      phase: "extract",
      digest: layer.digest,
      layer: i + 1,
      layers: manifest.layers.length,
    });
    await applyLayerFile(applier, path, layer.digest, config.diffIds[i], signal);
  }
  const { contentBytes } = applier.finish();
  return {
    ref,
    digest: top.digest,
    manifestDigest,
    config: config.image,
    metadata: applier.metadata,
    skipped: applier.skipped,
    contentBytes,
    layers: manifest.layers.map((l) => l.digest),
  };
}

async function resolvePlatform(
  client: RegistryClient,
  ref: ImageRef,
  name: string,
  top: FetchedManifest,
  signal: AbortSignal,
): Promise<{ manifest: ImageManifest; digest: string }> {
  let current = top;
  for (let depth = 0; depth <= MAX_INDEX_DEPTH; depth++) {
    if (current.parsed.kind === "manifest") {
      return { manifest: current.parsed.manifest, digest: current.digest };
    }
    const choice = selectFromIndex(current.parsed.index, LINUX_AMD64);
    if (choice.kind === "none") {
      throw new OciError(
        `Cannot pull "${name}": it has no linux/amd64 image (it has ${
          choice.seen.length ? choice.seen.join(", ") : "no platforms"
        })`,
        { code: "failed_precondition" },
      );
    }
    const next = choice.kind === "manifest" ? choice.descriptor : choice.descriptors[0];
    current = await client.getManifest(ref.repository, next.digest, { signal, expect: next });
  }
  throw new OciError(
    `Cannot pull "${name}": indexes are nested more than ${MAX_INDEX_DEPTH} deep`,
    { code: "failed_precondition" },
  );
}

function checkManifest(manifest: ImageManifest, name: string): void {
  const type = manifest.config.mediaType;
  if (type !== MEDIA.ociConfig && type !== MEDIA.dockerConfig) {
    throw new OciError(
      `Cannot pull "${name}": it is not a container image (config media type "${type}")`,
      { code: "failed_precondition" },
    );
  }
  for (const [i, layer] of manifest.layers.entries()) {
    if (!LAYER_MEDIA_TYPES.has(layer.mediaType)) {
      throw new OciError(
        `Cannot pull "${name}": layer ${i + 1} has unsupported media type "${layer.mediaType}"`,
        { code: "failed_precondition" },
      );
    }
  }
}

function blobFetcher(
  client: RegistryClient,
  ref: ImageRef,
  options: PullOptions,
  manifest: ImageManifest,
  signal: AbortSignal,
): (d: Descriptor) => Promise<string> {
  const blobs = [manifest.config, ...manifest.layers];
  const total = blobs.reduce((sum, b) => sum + b.size, 0);
  const progress = new Map<string, number>();
  return (d) =>
    options.cache.ensure(d, (s) => client.openBlob(ref.repository, d, { signal: s }), {
      signal,
      onProgress: (blobDone, blobTotal) => {
        progress.set(d.digest, blobDone);
        let done = 0;
        for (const v of progress.values()) done += v;
        options.onProgress?.({
          phase: "download",
          digest: d.digest,
          blobDone,
          blobTotal,
          done,
          total,
        });
      },
    });
}

function startDownloads(
  layers: Descriptor[],
  fetchBlob: (d: Descriptor) => Promise<string>,
  concurrency: number,
  downloads: Promise<unknown>[],
): Promise<string>[] {
  const slots = layers.map(() => Promise.withResolvers<string>());
  let next = 0;
  const worker = async () => {
    while (next < layers.length) {
      const i = next++;
      try {
        slots[i].resolve(await fetchBlob(layers[i]));
      } catch (err) {
        slots[i].reject(err);
        for (let j = i + 1; j < layers.length; j++) slots[j].reject(err);
        next = layers.length;
      }
    }
  };
  for (let w = 0; w < Math.max(1, concurrency); w++) downloads.push(worker());
  for (const slot of slots) slot.promise.catch(() => {});
  return slots.map((s) => s.promise);
}

async function emptyDir(dir: string): Promise<void> {
  try {
    for await (const entry of Deno.readDir(dir)) {
      await Deno.remove(`${dir}/${entry.name}`, { recursive: true }).catch(() => {});
    }
  } catch {
    // the directory itself is gone or unreadable: nothing of ours is left to remove
  }
}
