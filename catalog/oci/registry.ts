/**
 * A `fetch`-based client for the OCI distribution API: `/v2/` ping, manifests (with
 * digest and size verification, schema 1 refused) and blob streams. Authentication is
 * {@linkcode RegistryAuth}'s; redirects are followed by hand so credentials never reach
 * another host.
 *
 * @module
 */

import { type FetchFn, fetchFollowingRedirects } from "../http.ts";
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, parseManifest } from "./_manifest.ts";
import type { Descriptor, ParsedManifest } from "./_manifest.ts";
import { type Credentials, RegistryAuth } from "./auth.ts";
import type { ImageRef } from "./ref.ts";
import { OciError } from "../errors.ts";

export type { Descriptor, ImageIndex, ImageManifest, Platform } from "./_manifest.ts";

/** Options for {@linkcode RegistryClient}. */
export interface RegistryClientOptions {
  /**
   * Talk plain http. `localhost`, `127.0.0.0/8` and `[::1]` registries always use http.
   * @default {false}
   */
  insecure?: boolean;
  /** Basic credentials for this registry (see `loadDockerCredentials`). */
  credentials?: Credentials;
  /** The fetch implementation. @default {globalThis.fetch} */
  fetch?: FetchFn;
}

/** A manifest as served, verified against its digest. */
export interface FetchedManifest {
  /** `sha256:` of the exact bytes received. */
  digest: string;
  /** Its media type. */
  mediaType: string;
  /** The exact bytes received. */
  bytes: Uint8Array;
  /** The parsed body. */
  parsed: ParsedManifest;
}

/** Per-call options: every registry call can be cancelled. */
export interface CallOptions {
  /** Aborts the call. */
  signal?: AbortSignal;
}

const SHA256_RE = /^sha256:[a-f0-9]{64}$/;

/**
 * One registry's client. Cheap to create; its bearer tokens are cached per scope for its
 * lifetime.
 *
 * @example
 * ```ts
 * const ref = parseImageRef("127.0.0.1:5000/test/busybox:latest");
 * const client = new RegistryClient(ref);
 * const m = await client.getManifest(ref.repository, "latest", { signal });
 * ```
 */
export class RegistryClient {
  /** `http://127.0.0.1:5000` or `https://registry-1.docker.io`. */
  readonly baseUrl: string;
  readonly #registry: string;
  readonly #auth: RegistryAuth;
  readonly #fetch?: FetchFn;

  constructor(ref: Pick<ImageRef, "registry" | "endpoint">, options: RegistryClientOptions = {}) {
    const http = options.insecure === true || isLoopback(ref.endpoint);
    this.baseUrl = `${http ? "http" : "https"}://${ref.endpoint}`;
    this.#registry = ref.registry;
    this.#fetch = options.fetch;
    this.#auth = new RegistryAuth(ref.registry, {
      credentials: options.credentials,
      allowHttpRealm: http,
      fetch: options.fetch,
    });
  }

  /**
   * Checks that the endpoint speaks the distribution API (`GET /v2/` answers 200 or 401).
   *
   * @throws {OciError} (`unavailable`) when it cannot be reached or answers otherwise.
   */
  async ping(options: CallOptions = {}): Promise<void> {
    const response = await this.#send("/v2/", undefined, options.signal);
    await response.body?.cancel();
    if (response.ok || response.status === 401) return;
    throw new OciError(
      `Cannot use registry "${this.#registry}": GET /v2/ answered HTTP ${response.status}`,
      { code: "unavailable" },
    );
  }

  /**
   * Fetches the manifest `reference` (a tag or `sha256:` digest) of `repository` and
   * verifies it: by digest, sha256(body) must equal it; by tag, it must equal the
   * `Docker-Content-Digest` header when present; with `expect`, size and digest must
   * equal the descriptor's.
   *
   * @throws {OciError} `not_found`, `permission_denied`, `unavailable` (bad digest or
   *   size, unreachable) or `failed_precondition` (schema 1, unknown media type).
   */
  async getManifest(
    repository: string,
    reference: string,
    options: CallOptions & { expect?: Descriptor } = {},
  ): Promise<FetchedManifest> {
    const what = `${this.#registry}/${repository}${
      reference.startsWith("sha256:") ? "@" : ":"
    }${reference}`;
    const path = `/v2/${repository}/manifests/${reference}`;
    const response = await this.#send(path, repository, options.signal, MANIFEST_ACCEPT);
    if (!response.ok) throw await this.#statusError(response, `manifest "${what}"`);
    const bytes = await readCapped(response, MAX_MANIFEST_BYTES, what);
    const digest = await sha256Digest(bytes);
    const mismatch = (why: string) =>
      new OciError(`Cannot use manifest of "${what}": ${why}`, { code: "unavailable" });
    if (SHA256_RE.test(reference) && digest !== reference) {
      throw mismatch(`its content hashes to "${digest}"`);
    }
    const header = response.headers.get("docker-content-digest");
    if (header?.startsWith("sha256:") && header !== digest) {
      throw mismatch(`its content hashes to "${digest}", the registry said "${header}"`);
    }
    if (options.expect) {
      if (bytes.length !== options.expect.size) {
        throw mismatch(`it is ${bytes.length} bytes, the index said ${options.expect.size}`);
      }
      if (digest !== options.expect.digest) throw mismatch(`its content hashes to "${digest}"`);
    }
    const parsed = parseManifest(bytes, response.headers.get("content-type"), what);
    const mediaType = parsed.kind === "index" ? parsed.index.mediaType : parsed.manifest.mediaType;
    return { digest, mediaType, bytes, parsed };
  }

  /**
   * Opens the blob `descriptor` of `repository` as a stream. The caller verifies digest
   * and size while reading (see `BlobCache`); a `Content-Length` that differs from the
   * descriptor's size is refused here.
   *
   * @throws {OciError} `not_found`, `permission_denied` or `unavailable`.
   */
  async openBlob(
    repository: string,
    descriptor: Descriptor,
    options: CallOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const what = `blob "${descriptor.digest}" of "${this.#registry}/${repository}"`;
    const path = `/v2/${repository}/blobs/${descriptor.digest}`;
    const response = await this.#send(path, repository, options.signal);
    if (!response.ok) throw await this.#statusError(response, what);
    const length = response.headers.get("content-length");
    if (length !== null && Number(length) !== descriptor.size) {
      await response.body?.cancel();
      throw new OciError(
        `Cannot download ${what}: the registry sends ${length} bytes, the manifest says ${descriptor.size}`,
        { code: "unavailable" },
      );
    }
    if (response.body === null) return new Blob([]).stream();
    return response.body;
  }

  async #send(
    path: string,
    repository: string | undefined,
    signal: AbortSignal | undefined,
    accept?: string,
  ): Promise<Response> {
    const scope = repository === undefined ? "" : `repository:${repository}:pull`;
    const url = `${this.baseUrl}${path}`;
    for (let attempt = 0;; attempt++) {
      const headers: Record<string, string> = { ...this.#auth.headers(scope) };
      if (accept) headers.Accept = accept;
      let response: Response;
      try {
        ({ response } = await fetchFollowingRedirects(url, {
          headers,
          signal,
          fetch: this.#fetch,
        }));
      } catch (err) {
        if (signal?.aborted) throw err;
        throw new OciError(
          `Cannot reach registry "${this.#registry}" at "${this.baseUrl}": ${errText(err)}`,
          { code: "unavailable", cause: err, hint: "check the registry name and your network" },
        );
      }
      if (response.status !== 401 || attempt > 0 || repository === undefined) return response;
      await response.body?.cancel();
      await this.#auth.answer(response.headers.get("www-authenticate"), scope, { signal });
    }
  }

  async #statusError(response: Response, what: string): Promise<OciError> {
    const detail = registryErrorText(await response.text().catch(() => ""));
    const suffix = detail ? `: ${detail}` : "";
    const status = response.status;
    if (status === 404) {
      return new OciError(`Cannot find ${what} (HTTP 404${suffix})`, { code: "not_found" });
    }
    if (status === 401 || status === 403) {
      return new OciError(`Cannot read ${what}: access denied (HTTP ${status}${suffix})`, {
        code: "permission_denied",
        hint: `check the name, or log in (docker login ${this.#registry})`,
      });
    }
    const why = status === 429 ? "rate limited" : `HTTP ${status}`;
    return new OciError(`Cannot read ${what}: ${why}${suffix}`, { code: "unavailable" });
  }
}

/** Whether `endpoint` (`host[:port]`) is a loopback registry, spoken to over plain http. */
export function isLoopback(endpoint: string): boolean {
  const host = endpoint.startsWith("[")
    ? endpoint.slice(0, endpoint.indexOf("]") + 1)
    : endpoint.replace(/:\d+$/, "");
  return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** `sha256:<hex>` of `bytes`. */
export async function sha256Digest(bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return `sha256:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

async function readCapped(response: Response, max: number, what: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (response.body === null) return new Uint8Array(0);
  for await (const chunk of response.body) {
    total += chunk.length;
    if (total > max) {
      throw new OciError(`Cannot use manifest of "${what}": it is larger than ${max} bytes`, {
        code: "unavailable",
      });
    }
    chunks.push(chunk);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

function registryErrorText(body: string): string {
  try {
    const parsed = JSON.parse(body) as { errors?: { code?: unknown; message?: unknown }[] };
    if (Array.isArray(parsed.errors)) {
      return parsed.errors.map((e) => [e.code, e.message].filter((x) => x).join(" ")).join("; ");
    }
  } catch {
    // not JSON: fall through
  }
  return body.trim().slice(0, 200);
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
