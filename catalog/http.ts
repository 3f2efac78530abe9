/**
 * Folder-private HTTP helpers: `fetch` with redirects followed by hand, so that an
 * `Authorization` header never travels to another host (OCI distribution spec: clients
 * "MUST NOT forward Authorization headers across host boundaries").
 *
 * @module
 */

/** The `fetch` signature the catalog code calls; tests may pass their own. */
export type FetchFn = (input: string | URL, init?: RequestInit) => Promise<Response>;

/** Options for {@linkcode fetchFollowingRedirects}. */
export interface RedirectFetchOptions {
  /** HTTP method. @default {"GET"} */
  method?: string;
  /** Request headers; `Authorization` is dropped once a redirect leaves the first host. */
  headers?: Record<string, string>;
  /** Aborts the request. */
  signal?: AbortSignal;
  /** The fetch implementation. @default {globalThis.fetch} */
  fetch?: FetchFn;
  /** Redirects followed before giving up. @default {10} */
  maxRedirects?: number;
}

/** The final response and the URL it came from. */
export interface RedirectFetchResult {
  /** The first non-redirect response. */
  response: Response;
  /** The URL that produced it. */
  url: URL;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const CREDENTIAL_HEADERS = ["authorization", "cookie", "proxy-authorization"];

/**
 * Fetches `url`, following up to `maxRedirects` redirects manually. Headers are kept on
 * the same host (scheme, name and port) and credential headers are dropped for good as
 * soon as a redirect points elsewhere; a redirect from https to http is refused.
 *
 * @throws {TypeError} on network failure, too many redirects or an https→http redirect.
 */
export async function fetchFollowingRedirects(
  url: string | URL,
  options: RedirectFetchOptions = {},
): Promise<RedirectFetchResult> {
  const doFetch = options.fetch ?? fetch;
  const max = options.maxRedirects ?? 10;
  const origin = new URL(url);
  let current = origin;
  let method = options.method ?? "GET";
  let headers = { ...(options.headers ?? {}) };
  for (let hop = 0;; hop++) {
    const response = await doFetch(current, {
      method,
      headers,
      redirect: "manual",
      signal: options.signal,
    });
    const location = response.headers.get("location");
    if (!REDIRECTS.has(response.status) || location === null) return { response, url: current };
    await response.body?.cancel();
    if (hop >= max) throw new TypeError(`too many redirects (more than ${max})`);
    const next = new URL(location, current);
    if (next.protocol !== "http:" && next.protocol !== "https:") {
      throw new TypeError(`redirect to unsupported URL "${next.href}"`);
    }
    if (current.protocol === "https:" && next.protocol === "http:") {
      throw new TypeError(`redirect from https to insecure "${next.href}" refused`);
    }
    if (next.origin !== origin.origin) headers = withoutCredentials(headers);
    if (response.status === 303 && method !== "HEAD") method = "GET";
    current = next;
  }
}

function withoutCredentials(headers: Record<string, string>): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (!CREDENTIAL_HEADERS.includes(k.toLowerCase())) kept[k] = v;
  }
  return kept;
}
