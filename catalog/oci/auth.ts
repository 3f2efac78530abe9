/**
 * Registry authentication: `WWW-Authenticate` challenges, the anonymous or
 * credentialed bearer-token flow (Docker token spec) with a per-scope token cache, Basic
 * credentials, and credentials from Docker's `config.json` and its credential helpers.
 *
 * @module
 */

import { type FetchFn, fetchFollowingRedirects } from "../http.ts";
import { OciError } from "../errors.ts";
import { askCredentialHelper } from "./_credential_helper.ts";
import { decodeBase64 } from "../../host/bytes.ts";

/** A user name and password (or token) for one registry. */
export interface Credentials {
  /** User name. */
  username: string;
  /** Password or personal access token. */
  password: string;
}

/** A parsed `WWW-Authenticate` challenge. */
export interface Challenge {
  /** `bearer` or `basic` (lowercase). */
  scheme: string;
  /** Parameters, keys lowercased: `realm`, `service`, `scope`, `error`. */
  params: Record<string, string>;
}

/**
 * Parses the first challenge of a `WWW-Authenticate` header, e.g.
 * `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`.
 * Quoted values may contain commas and `\"` escapes.
 *
 * @returns `undefined` for an empty or unparseable header.
 * @example
 * ```ts
 * parseChallenge('Bearer realm="https://a/token",service="reg"')?.params.realm; // "https://a/token"
 * ```
 */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9._~+/-]*)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*(?:,|$)/gy;
  const rest = m[2];
  re.lastIndex = 0;
  while (re.lastIndex < rest.length) {
    const p = re.exec(rest);
    if (!p) break;
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3];
  }
  return { scheme: m[1].toLowerCase(), params };
}

/** Options for {@linkcode loadDockerCredentials}. */
export interface DockerCredentialsOptions {
  /**
   * The `config.json` to read. @default {"$DOCKER_CONFIG/config.json", else
   * "$HOME/.docker/config.json"}
   */
  configFile?: string;
  /** `PATH` for credential helpers. @default {the process's own} */
  helperPath?: string;
  /** Stops a credential helper that is still running. */
  signal?: AbortSignal;
}

/** The server URL Docker stores and asks helpers for, for Docker Hub. */
const HUB_SERVER_URL = "https://index.docker.io/v1/";

const HUB_ALIASES = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/**
 * Reads the Basic credentials for `registry` (`docker.io`, `ghcr.io`, `host:port`) from
 * Docker's `config.json` as Docker does: the registry's credential helper
 * (`credHelpers.<host>`), else the default one (`credsStore`), else
 * `auths.<host>.auth` (base64 `user:password`) or `auths.<host>.username`/`password`.
 * Keys may be bare hosts or URLs (`https://index.docker.io/v1/`).
 *
 * @returns `undefined` when the file or an entry for the registry is missing.
 * @throws {OciError} when the file exists but cannot be read or parsed.
 * @example
 * ```ts
 * const creds = await loadDockerCredentials("ghcr.io");
 * ```
 */
export async function loadDockerCredentials(
  registry: string,
  options: DockerCredentialsOptions = {},
): Promise<Credentials | undefined> {
  const file = options.configFile ?? defaultDockerConfigFile();
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new OciError(`Cannot read Docker credentials from "${file}": ${errText(err)}`, {
      code: "permission_denied",
      cause: err,
    });
  }
  const hub = HUB_ALIASES.includes(registry);
  const wanted = hub ? HUB_ALIASES : [registry];
  const config = configOf(file, text);
  const helpers = isRecord(config.credHelpers) ? config.credHelpers : {};
  const helper = wanted.map((host) => helpers[host]).find((h) => typeof h === "string") ??
    config.credsStore;
  if (typeof helper === "string" && helper !== "") {
    const fromHelper = await askCredentialHelper(helper, hub ? HUB_SERVER_URL : registry, {
      path: options.helperPath,
      signal: options.signal,
    });
    if (fromHelper) return fromHelper;
  }
  const auths = isRecord(config.auths) ? config.auths : {};
  for (const [key, entry] of Object.entries(auths)) {
    if (!wanted.includes(hostOfAuthKey(key))) continue;
    const creds = credentialsOf(file, key, entry);
    if (creds) return creds;
  }
  return undefined;
}

function defaultDockerConfigFile(): string | undefined {
  const dir = Deno.env.get("DOCKER_CONFIG");
  if (dir) return `${dir}/config.json`;
  const home = Deno.env.get("HOME");
  return home ? `${home}/.docker/config.json` : undefined;
}

function configOf(file: string, text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new OciError(`Cannot parse Docker credentials file "${file}": ${errText(err)}`, {
      code: "invalid_argument",
      cause: err,
    });
  }
  return isRecord(parsed) ? parsed : {};
}

function hostOfAuthKey(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "").toLowerCase();
}

function credentialsOf(file: string, key: string, entry: unknown): Credentials | undefined {
  if (!isRecord(entry)) return undefined;
  if (typeof entry.auth === "string" && entry.auth !== "") {
    let decoded: string;
    try {
      decoded = new TextDecoder("utf-8", { fatal: true }).decode(
        decodeBase64(entry.auth),
      );
    } catch (err) {
      throw new OciError(
        `Cannot use Docker credentials for "${key}" in "${file}": "auth" is not valid base64`,
        { code: "invalid_argument", cause: err },
      );
    }
    const colon = decoded.indexOf(":");
    if (colon === -1) {
      throw new OciError(
        `Cannot use Docker credentials for "${key}" in "${file}": "auth" is not "user:password"`,
        { code: "invalid_argument" },
      );
    }
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof entry.username === "string" && typeof entry.password === "string") {
    return { username: entry.username, password: entry.password };
  }
  return undefined;
}

/** Options for {@linkcode RegistryAuth}. */
export interface RegistryAuthOptions {
  /** Basic credentials, sent to Basic challenges and to the token realm. */
  credentials?: Credentials;
  /** Whether the token realm may be plain http (local or insecure registries). @default {false} */
  allowHttpRealm?: boolean;
  /** The fetch implementation. @default {globalThis.fetch} */
  fetch?: FetchFn;
  /** Clock in milliseconds, for token expiry. @default {Date.now} */
  now?: () => number;
}

interface CachedToken {
  header: string;
  expiresAt: number;
}

const MIN_TOKEN_SECONDS = 60;

/**
 * Authorization state for one registry: answers 401 challenges and caches bearer tokens
 * per scope until they expire.
 *
 * @example
 * ```ts
 * const auth = new RegistryAuth("docker.io", {});
 * const scope = "repository:library/debian:pull";
 * let res = await fetch(url, { headers: auth.headers(scope) });
 * if (res.status === 401) {
 *   await auth.answer(res.headers.get("www-authenticate"), scope, { signal });
 *   res = await fetch(url, { headers: auth.headers(scope) });
 * }
 * ```
 */
export class RegistryAuth {
  readonly #registry: string;
  readonly #options: RegistryAuthOptions;
  // guards nothing across awaits: a racing refresh just replaces an equal token
  readonly #tokens = new Map<string, CachedToken>();
  #basic = false;

  constructor(registry: string, options: RegistryAuthOptions = {}) {
    this.#registry = registry;
    this.#options = options;
  }

  /** The `Authorization` header to send for `scope`, if one is known and unexpired. */
  headers(scope: string): Record<string, string> {
    const creds = this.#options.credentials;
    if (this.#basic && creds) return { Authorization: basicHeader(creds) };
    const token = this.#tokens.get(scope);
    if (token && token.expiresAt > this.#now()) return { Authorization: token.header };
    return {};
  }

  /**
   * Answers a 401 challenge for `scope`: fetches a bearer token (anonymously, or with the
   * Basic credentials) or switches to Basic auth.
   *
   * @throws {OciError} (`permission_denied`) when the challenge cannot be answered, or
   *   (`unavailable`) when the token service fails.
   */
  async answer(
    header: string | null,
    scope: string,
    opts: { signal?: AbortSignal },
  ): Promise<void> {
    const challenge = parseChallenge(header);
    if (challenge?.scheme === "basic") {
      if (!this.#options.credentials) {
        throw this.#denied("it asks for a username and password, and none are configured");
      }
      if (this.#basic) throw this.#denied("it rejected the configured username and password");
      this.#basic = true;
      return;
    }
    if (challenge?.scheme !== "bearer" || !challenge.params.realm) {
      throw this.#denied(`unsupported authentication challenge "${header ?? ""}"`);
    }
    this.#tokens.delete(scope);
    const token = await this.#fetchToken(challenge.params, scope, opts.signal);
    this.#tokens.set(scope, token);
  }

  async #fetchToken(
    params: Record<string, string>,
    scope: string,
    signal?: AbortSignal,
  ): Promise<CachedToken> {
    let realm: URL;
    try {
      realm = new URL(params.realm);
    } catch {
      throw this.#denied(`the token realm "${params.realm}" is not a URL`);
    }
    const httpOk = this.#options.allowHttpRealm === true && realm.protocol === "http:";
    if (realm.protocol !== "https:" && !httpOk) {
      throw this.#denied(`the token realm "${realm.href}" is not https`);
    }
    if (params.service) realm.searchParams.set("service", params.service);
    realm.searchParams.append("scope", params.scope || scope);
    const creds = this.#options.credentials;
    const headers: Record<string, string> = creds ? { Authorization: basicHeader(creds) } : {};
    let response: Response;
    try {
      ({ response } = await fetchFollowingRedirects(realm, {
        headers,
        signal,
        fetch: this.#options.fetch,
      }));
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new OciError(
        `Cannot get a token for "${this.#registry}" from "${realm.origin}": ${errText(err)}`,
        { code: "unavailable", cause: err },
      );
    }
    return await this.#readToken(response, realm);
  }

  async #readToken(response: Response, realm: URL): Promise<CachedToken> {
    const text = await response.text();
    if (response.status === 401 || response.status === 403) {
      throw this.#denied(`the token service refused (HTTP ${response.status})`);
    }
    if (!response.ok) {
      throw new OciError(
        `Cannot get a token for "${this.#registry}" from "${realm.origin}": HTTP ${response.status}`,
        { code: "unavailable" },
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const token = isRecord(body) ? (body.token ?? body.access_token) : undefined;
    if (typeof token !== "string" || token === "") {
      throw new OciError(
        `Cannot get a token for "${this.#registry}" from "${realm.origin}": the answer has no token`,
        { code: "unavailable" },
      );
    }
    const expires = isRecord(body) && typeof body.expires_in === "number" ? body.expires_in : 0;
    const seconds = Math.max(MIN_TOKEN_SECONDS, expires);
    return { header: `Bearer ${token}`, expiresAt: this.#now() + (seconds - 5) * 1000 };
  }

  #denied(why: string): OciError {
    return new OciError(`Cannot authenticate to registry "${this.#registry}": ${why}`, {
      code: "permission_denied",
      hint: this.#options.credentials
        ? "check the credentials in your Docker config.json"
        : `log in first (docker login ${this.#registry}) or use a public image`,
    });
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }
}

function basicHeader(creds: Credentials): string {
  const bytes = new TextEncoder().encode(`${creds.username}:${creds.password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
