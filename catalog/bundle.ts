/**
 * Fetches a catalog bundle (`.tar.zst` or `.tar.gz`): streamed to a temp file while
 * hashed and counted, verified against the catalog's sha256 and size before anything is
 * extracted, then unpacked with exactly the expected entries and nothing else.
 *
 * Image bundles hold `rootfs.ext4`, `manifest.json` and optionally `work-seed.ext4`;
 * kernel bundles hold `vmlinux`, optionally `initrd.img` and a `modules/` tree.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { type FetchFn, fetchFollowingRedirects } from "./http.ts";
import { printable, splitArchivePath } from "./archive/names.ts";
import { decompress } from "./archive/decompress.ts";
import { BundleError } from "./errors.ts";
import { readTar, type TarEntry } from "./archive/tar.ts";
import { SparseWriter } from "../host/disk/sparse_writer.ts";

/** What a bundle holds. */
export type BundleKind = "image" | "kernel";

/** Progress of a bundle fetch. */
export interface BundleProgress {
  /** `download` while bytes arrive, `extract` once per extracted file. */
  phase: "download" | "extract";
  /** Bytes downloaded so far (the whole size during `extract`). */
  done: number;
  /** The bundle's size. */
  total: number;
  /** The file being extracted (`extract` only). */
  file?: string;
}

/** Options for {@linkcode fetchBundle}. */
export interface FetchBundleOptions {
  /** Where the bundle is (http or https). */
  url: string;
  /** Expected sha256 of the bundle file: 64 lowercase hex, optionally `sha256:`-prefixed. */
  sha256: string;
  /** Expected size in bytes. */
  size: number;
  /** Which entries are allowed. */
  kind: BundleKind;
  /** An existing, empty directory that receives the files. */
  destDir: string;
  /** Cancels the fetch. */
  signal?: AbortSignal;
  /** Progress callback. */
  onProgress?: (progress: BundleProgress) => void;
  /** Extra request headers; `Authorization` is never sent past a redirect to another host. */
  headers?: Record<string, string>;
  /** The fetch implementation. @default {globalThis.fetch} */
  fetch?: FetchFn;
}

/** A fetched and extracted bundle. */
export interface FetchedBundle {
  /** Extracted files relative to `destDir` (`rootfs.ext4`, `modules/6.1/…`), in order. */
  files: string[];
  /** Bytes downloaded. */
  bytes: number;
}

const RULES: Record<BundleKind, { required: string[]; optional: string[]; tree?: string }> = {
  image: { required: ["rootfs.ext4", "manifest.json"], optional: ["work-seed.ext4"] },
  kernel: { required: ["vmlinux"], optional: ["initrd.img"], tree: "modules" },
};

/**
 * Downloads, verifies and extracts a bundle into `destDir`. On any failure `destDir` is
 * left empty.
 *
 * @throws {BundleError} for download failures (`unavailable`), a sha256 or size mismatch
 *   (`unavailable`), unexpected, duplicate, unsafe or missing entries
 *   (`invalid_argument`), or cancellation (`cancelled`).
 * @example
 * ```ts
 * await fetchBundle({
 *   url: entry.url, sha256: entry.sha256, size: entry.size,
 *   kind: "image", destDir: stagingDir, signal,
 * });
 * ```
 */
export async function fetchBundle(options: FetchBundleOptions): Promise<FetchedBundle> {
  const expected = options.sha256.replace(/^sha256:/, "");
  if (!/^[a-f0-9]{64}$/.test(expected) || !Number.isSafeInteger(options.size) || options.size < 0) {
    throw new BundleError(
      `Cannot fetch bundle "${options.url}": the catalog's sha256 or size is malformed`,
      { code: "invalid_argument" },
    );
  }
  await assertEmpty(options.destDir);
  const temp = `${options.destDir}/.download-${crypto.randomUUID()}`;
  try {
    await download(options, expected, temp);
    const files = await extract(options, temp);
    return { files, bytes: options.size };
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    await emptyDir(options.destDir);
    if (options.signal?.aborted) {
      throw new BundleError(`Cannot fetch bundle "${options.url}": the fetch was cancelled`, {
        code: "cancelled",
        cause: err,
      });
    }
    throw err;
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
}

async function download(options: FetchBundleOptions, sha256: string, temp: string) {
  const fail = (why: string, cause?: unknown) =>
    new BundleError(`Cannot fetch bundle "${options.url}": ${why}`, { code: "unavailable", cause });
  let response: Response;
  try {
    ({ response } = await fetchFollowingRedirects(options.url, {
      headers: options.headers,
      signal: options.signal,
      fetch: options.fetch,
    }));
  } catch (err) {
    throw fail(err instanceof Error ? err.message : String(err), err);
  }
  if (response.status !== 200 || response.body === null) {
    await response.body?.cancel();
    throw fail(`HTTP ${response.status}`);
  }
  const length = response.headers.get("content-length");
  if (length !== null && Number(length) !== options.size) {
    await response.body.cancel();
    throw fail(`the server sends ${length} bytes, the catalog says ${options.size}`);
  }
  const hash = createHash("sha256");
  let done = 0;
  {
    using file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
    try {
      for await (const chunk of response.body) {
        done += chunk.length;
        if (done > options.size) throw fail(`it is larger than ${options.size} bytes`);
        hash.update(chunk);
        let written = 0;
        while (written < chunk.length) written += await file.write(chunk.subarray(written));
        options.onProgress?.({ phase: "download", done, total: options.size });
      }
    } catch (err) {
      if (err instanceof BundleError || options.signal?.aborted) throw err;
      throw fail(`the download broke off: ${err instanceof Error ? err.message : err}`, err);
    }
  }
  if (done !== options.size) throw fail(`got ${done} bytes, the catalog says ${options.size}`);
  const actual = hash.digest("hex");
  if (actual !== sha256) throw fail(`its sha256 is ${actual}, the catalog says ${sha256}`);
}

async function extract(options: FetchBundleOptions, temp: string): Promise<string[]> {
  const rules = RULES[options.kind];
  const files: string[] = [];
  const seen = new Set<string>();
  const file = await Deno.open(temp, { read: true });
  const { stream } = await decompress(file.readable);
  for await (const entry of readTar(stream)) {
    options.signal?.throwIfAborted();
    const rel = checkEntry(options, entry, seen);
    if (rel === undefined) continue;
    if (entry.type === "dir") {
      await Deno.mkdir(`${options.destDir}/${rel}`, { recursive: true, mode: 0o755 });
      continue;
    }
    const dir = rel.split("/").slice(0, -1).join("/");
    if (dir) await Deno.mkdir(`${options.destDir}/${dir}`, { recursive: true, mode: 0o755 });
    await writeEntry(`${options.destDir}/${rel}`, entry);
    files.push(rel);
    options.onProgress?.({ phase: "extract", done: options.size, total: options.size, file: rel });
  }
  const missing = rules.required.filter((r) => !seen.has(r));
  if (missing.length > 0) {
    throw new BundleError(
      `Cannot use bundle "${options.url}": it lacks ${missing.map((m) => `"${m}"`).join(", ")}`,
      { code: "invalid_argument" },
    );
  }
  return files;
}

/** The entry's cleaned relative path, `undefined` to skip it (the root), or a refusal. */
function checkEntry(
  options: FetchBundleOptions,
  entry: TarEntry,
  seen: Set<string>,
): string | undefined {
  const refuse = (why: string) =>
    new BundleError(
      `Cannot use bundle "${options.url}": entry "${printable(entry.path)}" ${why}`,
      { code: "invalid_argument", hint: "the bundle is corrupt or not from banger's catalog" },
    );
  const parts = splitArchivePath(entry.path);
  if (typeof parts === "string") throw refuse(`is refused: ${parts}`);
  if (parts.length === 0) {
    if (entry.type !== "dir") throw refuse("is not a directory");
    return undefined;
  }
  const rel = parts.join("/");
  if (seen.has(rel)) throw refuse("appears twice");
  seen.add(rel);
  const rules = RULES[options.kind];
  const inTree = rules.tree !== undefined && parts[0] === rules.tree;
  if (inTree && entry.type === "dir") return rel;
  if (entry.type !== "file") throw refuse(`is a ${entry.type}, only regular files are allowed`);
  if (inTree && parts.length > 1) return rel;
  if (parts.length === 1 && [...rules.required, ...rules.optional].includes(rel)) return rel;
  throw refuse(`is not expected in a ${options.kind} bundle`);
}

async function writeEntry(path: string, entry: TarEntry): Promise<void> {
  using file = await Deno.open(path, { write: true, createNew: true, mode: 0o644 });
  const writer = new SparseWriter(file);
  for await (const chunk of entry.body) await writer.write(chunk);
  await writer.finish();
}

async function assertEmpty(dir: string): Promise<void> {
  for await (const _ of Deno.readDir(dir)) {
    throw new BundleError(`Cannot fetch a bundle into "${dir}": the directory is not empty`, {
      code: "failed_precondition",
    });
  }
}

async function emptyDir(dir: string): Promise<void> {
  try {
    for await (const entry of Deno.readDir(dir)) {
      await Deno.remove(`${dir}/${entry.name}`, { recursive: true }).catch(() => {});
    }
  } catch {
    // the directory is gone: nothing of ours is left
  }
}
