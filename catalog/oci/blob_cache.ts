/**
 * The content-addressed blob cache shared by every OCI pull: `<dir>/<hex>` holds a blob
 * whose sha256 is `<hex>`. Blobs are streamed to a unique temp file, hashed and counted
 * on the way, and renamed into place only when digest and size match; concurrent
 * requests for one blob share one download.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Descriptor } from "./_manifest.ts";
import { BangerError } from "../../host/errors.ts";
import { OciError } from "../errors.ts";

/** Bytes done and expected for one blob. */
export type BlobProgressFn = (done: number, total: number) => void;

/** Opens the blob's byte stream; aborted through `signal` when nobody wants it anymore. */
export type BlobOpener = (signal: AbortSignal) => Promise<ReadableStream<Uint8Array>>;

/** Options for {@linkcode BlobCache.ensure}. */
export interface EnsureOptions {
  /** Stops waiting; the download itself stops once every waiter has stopped. */
  signal?: AbortSignal;
  /** Called as bytes arrive (and once with `total, total` on a cache hit). */
  onProgress?: BlobProgressFn;
}

interface Flight {
  promise: Promise<string>;
  controller: AbortController;
  waiters: number;
  listeners: Set<BlobProgressFn>;
}

const TEMP_PREFIX = ".tmp-";
let tempCounter = 0;

/**
 * A directory of verified blobs. One instance per directory per process, so that
 * concurrent pulls coalesce their downloads.
 *
 * @example
 * ```ts
 * const cache = new BlobCache(ociBlobsDir(layout));
 * const path = await cache.ensure(layer, (s) => client.openBlob(repo, layer, { signal: s }), {
 *   signal,
 * });
 * ```
 */
export class BlobCache {
  /** The directory holding `<hex>` files. */
  readonly dir: string;
  // guards in-process downloads; a blob has at most one flight at a time
  readonly #flights = new Map<string, Flight>();
  // digests a pull still needs (from its download to its layer's extraction), with counts
  readonly #held = new Map<string, number>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Where the blob `digest` (`sha256:<hex>`) lives once cached. */
  path(digest: string): string {
    return `${this.dir}/${hexOf(digest)}`;
  }

  /**
   * Keeps the blobs `digests` from being pruned until disposed: a pull holds its config
   * and layers from their download until it has extracted them.
   */
  hold(digests: readonly string[]): Disposable {
    for (const d of digests) this.#held.set(d, (this.#held.get(d) ?? 0) + 1);
    return {
      [Symbol.dispose]: () => {
        for (const d of digests) {
          const n = (this.#held.get(d) ?? 1) - 1;
          if (n > 0) this.#held.set(d, n);
          else this.#held.delete(d);
        }
      },
    };
  }

  /**
   * Removes cached blobs (`image cache prune`); with `dryRun` only counts them. Blobs
   * being downloaded (temp files) or held by a pull in flight are left alone.
   */
  async prune(dryRun: boolean): Promise<{ dir: string; files: number; bytes: number }> {
    let files = 0;
    let bytes = 0;
    let entries: Deno.DirEntry[] = [];
    try {
      entries = await Array.fromAsync(Deno.readDir(this.dir));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    for (const e of entries) {
      if (!e.isFile || !/^[0-9a-f]{64}$/.test(e.name)) continue;
      const digest = `sha256:${e.name}`;
      if (this.#held.has(digest) || this.#flights.has(digest)) continue;
      const path = `${this.dir}/${e.name}`;
      const info = await Deno.lstat(path).catch(() => undefined);
      if (!info) continue;
      files++;
      bytes += info.size;
      if (!dryRun) await Deno.remove(path).catch(() => {});
    }
    return { dir: this.dir, files, bytes };
  }

  /** Whether the blob is cached with the descriptor's size (content was verified on entry). */
  async has(descriptor: Pick<Descriptor, "digest" | "size">): Promise<boolean> {
    try {
      const info = await Deno.lstat(this.path(descriptor.digest));
      return info.isFile && info.size === descriptor.size;
    } catch {
      return false;
    }
  }

  /**
   * Returns the path of the cached blob, downloading it with `open` first when missing.
   * A download in progress for the same digest is joined, not repeated.
   *
   * @throws {OciError} `unavailable` when the bytes do not match the digest or size,
   *   `cancelled` when `signal` aborts; no temp file is left behind either way.
   */
  ensure(descriptor: Descriptor, open: BlobOpener, options: EnsureOptions = {}): Promise<string> {
    const { signal, onProgress } = options;
    if (signal?.aborted) return Promise.reject(cancelled(descriptor, signal));
    let flight = this.#flights.get(descriptor.digest);
    if (!flight) {
      const controller = new AbortController();
      const listeners = new Set<BlobProgressFn>();
      const promise = this.#fetch(descriptor, open, controller.signal, listeners)
        .finally(() => this.#flights.delete(descriptor.digest));
      promise.catch(() => {});
      flight = { promise, controller, waiters: 0, listeners };
      this.#flights.set(descriptor.digest, flight);
    }
    return join(flight, descriptor, signal, onProgress);
  }

  async #fetch(
    descriptor: Descriptor,
    open: BlobOpener,
    signal: AbortSignal,
    listeners: Set<BlobProgressFn>,
  ): Promise<string> {
    const final = this.path(descriptor.digest);
    if (await this.has(descriptor)) {
      for (const l of listeners) l(descriptor.size, descriptor.size);
      return final;
    }
    await Deno.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const temp = `${this.dir}/${TEMP_PREFIX}${
      hexOf(descriptor.digest).slice(0, 16)
    }-${Deno.pid}-${tempCounter++}`;
    try {
      const stream = await open(signal);
      await writeVerified(stream, temp, descriptor, (done) => {
        for (const l of listeners) l(done, descriptor.size);
      });
      await Deno.rename(temp, final);
      return final;
    } catch (err) {
      await Deno.remove(temp).catch(() => {});
      if (signal.aborted) throw cancelled(descriptor, signal);
      if (err instanceof BangerError) throw err;
      throw new OciError(
        `Cannot download blob "${descriptor.digest}": ${err instanceof Error ? err.message : err}`,
        { code: "unavailable", cause: err },
      );
    }
  }
}

function join(
  flight: Flight,
  descriptor: Descriptor,
  signal: AbortSignal | undefined,
  onProgress: BlobProgressFn | undefined,
): Promise<string> {
  flight.waiters++;
  if (onProgress) flight.listeners.add(onProgress);
  return new Promise<string>((resolve, reject) => {
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      signal?.removeEventListener("abort", onAbort);
      if (onProgress) flight.listeners.delete(onProgress);
      flight.waiters--;
    };
    const onAbort = () => {
      leave();
      const error = cancelled(descriptor, signal);
      if (flight.waiters > 0) return reject(error);
      // the last waiter stops the download and returns once its temp file is gone
      flight.controller.abort(signal?.reason);
      flight.promise.then(() => reject(error), () => reject(error));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    flight.promise.then(
      (path) => {
        leave();
        resolve(path);
      },
      (err) => {
        leave();
        reject(err);
      },
    );
  });
}

async function writeVerified(
  stream: ReadableStream<Uint8Array>,
  temp: string,
  descriptor: Descriptor,
  progress: (done: number) => void,
): Promise<void> {
  const hash = createHash("sha256");
  let done = 0;
  {
    using file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
    for await (const chunk of stream) {
      done += chunk.length;
      if (done > descriptor.size) throw mismatch(descriptor, `more than ${descriptor.size} bytes`);
      hash.update(chunk);
      let written = 0;
      while (written < chunk.length) written += await file.write(chunk.subarray(written));
      progress(done);
    }
    if (done !== descriptor.size) {
      throw mismatch(descriptor, `${done} bytes, expected ${descriptor.size}`);
    }
    await file.sync();
  }
  const actual = `sha256:${hash.digest("hex")}`;
  if (actual !== descriptor.digest) {
    throw mismatch(descriptor, `content that hashes to "${actual}"`);
  }
}

function mismatch(descriptor: Descriptor, why: string): OciError {
  return new OciError(`Cannot use blob "${descriptor.digest}": the registry sent ${why}`, {
    code: "unavailable",
  });
}

function cancelled(descriptor: Descriptor, signal: AbortSignal | undefined): OciError {
  return new OciError(`Stopped downloading blob "${descriptor.digest}": the pull was cancelled`, {
    code: "cancelled",
    cause: signal?.reason,
  });
}

function hexOf(digest: string): string {
  if (!/^sha256:[a-f0-9]{64}$/.test(digest)) {
    throw new OciError(`Cannot cache blob "${digest}": only sha256 digests are supported`, {
      code: "invalid_argument",
    });
  }
  return digest.slice("sha256:".length);
}
