/**
 * Folder-private OCI manifest parsing: media types, descriptors, image manifests and
 * indexes (Docker manifest lists), and platform selection. Parsing is lenient about
 * extra fields (annotations, subject, artifactType) and strict about the ones banger uses.
 *
 * @module
 */

import { OciError } from "../errors.ts";

/** Manifest and config media types banger knows. */
export const MEDIA = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
} as const;

/** Every manifest type, for the `Accept` header. */
export const MANIFEST_ACCEPT = [
  MEDIA.ociIndex,
  MEDIA.dockerList,
  MEDIA.ociManifest,
  MEDIA.dockerManifest,
].join(", ");

const SCHEMA1 = [
  "application/vnd.docker.distribution.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/** Layer media types banger can unpack (compression is sniffed from the bytes anyway). */
export const LAYER_MEDIA_TYPES: ReadonlySet<string> = new Set([
  "application/vnd.oci.image.layer.v1.tar",
  "application/vnd.oci.image.layer.v1.tar+gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd",
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  "application/vnd.docker.image.rootfs.diff.tar.gzip",
  "application/vnd.docker.image.rootfs.diff.tar.zstd",
]);

/** Largest manifest accepted (the distribution spec's recommended limit). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

const SHA256_RE = /^sha256:[a-f0-9]{64}$/;

/** A platform from an index entry. */
export interface Platform {
  /** `amd64`, `arm64`, `unknown`. */
  architecture: string;
  /** `linux`, `unknown`. */
  os: string;
  /** `v8` and friends. */
  variant?: string;
}

/** A content descriptor; `digest` is always `sha256:<64 hex>`. */
export interface Descriptor {
  /** The referenced content's media type. */
  mediaType: string;
  /** `sha256:<64 hex>`. */
  digest: string;
  /** Exact byte length. */
  size: number;
  /** Index entries only. */
  platform?: Platform;
  /** Free-form annotations. */
  annotations?: Record<string, string>;
}

/** An OCI image manifest or Docker v2 schema 2 manifest. */
export interface ImageManifest {
  /** The manifest's media type. */
  mediaType: string;
  /** The image config blob. */
  config: Descriptor;
  /** Layers, base first. */
  layers: Descriptor[];
}

/** An OCI index or Docker manifest list. */
export interface ImageIndex {
  /** The index's media type. */
  mediaType: string;
  /** Its entries, in order. */
  manifests: Descriptor[];
}

/** A parsed manifest body. */
export type ParsedManifest =
  | { kind: "index"; index: ImageIndex }
  | { kind: "manifest"; manifest: ImageManifest };

/**
 * Parses manifest `bytes` served with `contentType` (parameters ignored). `what` names
 * the manifest in messages (`"127.0.0.1:5000/x/y:tag"`).
 *
 * @throws {OciError} for schema 1, unknown media types, a body whose `mediaType`
 *   contradicts the Content-Type, or malformed JSON and descriptors.
 */
export function parseManifest(
  bytes: Uint8Array,
  contentType: string | null,
  what: string,
): ParsedManifest {
  const bad = (why: string, code: "failed_precondition" | "unavailable" = "unavailable") =>
    new OciError(`Cannot use manifest of "${what}": ${why}`, { code });
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw bad("it is not valid JSON");
  }
  if (!isRecord(body)) throw bad("it is not a JSON object");
  const header = (contentType ?? "").split(";")[0].trim().toLowerCase();
  const bodyType = typeof body.mediaType === "string" ? body.mediaType : undefined;
  if (SCHEMA1.includes(header) || body.schemaVersion === 1) {
    throw bad(
      "it is a Docker schema 1 manifest, which is deprecated and not supported",
      "failed_precondition",
    );
  }
  const generic = header === "" || header === "application/json" ||
    header === "application/octet-stream";
  const mediaType = generic ? (bodyType ?? guessType(body)) : header;
  if (bodyType !== undefined && bodyType !== mediaType) {
    throw bad(`its mediaType "${bodyType}" contradicts its Content-Type "${header}"`);
  }
  if (body.schemaVersion !== 2) throw bad(`schemaVersion must be 2`);
  if (mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerList) {
    if (!Array.isArray(body.manifests)) throw bad(`"manifests" must be a list`);
    const manifests = body.manifests.map((d, i) => descriptor(d, `manifests[${i}]`, bad));
    return { kind: "index", index: { mediaType, manifests } };
  }
  if (mediaType === MEDIA.ociManifest || mediaType === MEDIA.dockerManifest) {
    const config = descriptor(body.config, "config", bad);
    if (!Array.isArray(body.layers)) throw bad(`"layers" must be a list`);
    const layers = body.layers.map((d, i) => descriptor(d, `layers[${i}]`, bad));
    return { kind: "manifest", manifest: { mediaType, config, layers } };
  }
  throw bad(`its media type "${mediaType || "(none)"}" is not supported`, "failed_precondition");
}

function guessType(body: Record<string, unknown>): string {
  if (Array.isArray(body.manifests)) return MEDIA.ociIndex;
  if (isRecord(body.config)) return MEDIA.ociManifest;
  return "";
}

function descriptor(value: unknown, field: string, bad: (why: string) => OciError): Descriptor {
  if (!isRecord(value)) throw bad(`"${field}" must be a descriptor object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== "string") throw bad(`"${field}.mediaType" must be a string`);
  if (typeof digest !== "string" || !SHA256_RE.test(digest)) {
    throw bad(`"${field}.digest" must be "sha256:" and 64 lowercase hex digits`);
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw bad(`"${field}.size" must be a non-negative integer`);
  }
  const out: Descriptor = { mediaType, digest, size };
  if (isRecord(value.platform)) {
    const p = value.platform;
    out.platform = {
      architecture: typeof p.architecture === "string" ? p.architecture : "",
      os: typeof p.os === "string" ? p.os : "",
      variant: typeof p.variant === "string" ? p.variant : undefined,
    };
  }
  if (isRecord(value.annotations)) {
    out.annotations = Object.fromEntries(
      Object.entries(value.annotations).filter((e): e is [string, string] =>
        typeof e[1] === "string"
      ),
    );
  }
  return out;
}

/** The platform banger runs guests for. */
export const LINUX_AMD64: Platform = { os: "linux", architecture: "amd64" };

/** What {@linkcode selectFromIndex} decided. */
export type IndexChoice =
  | { kind: "manifest"; descriptor: Descriptor }
  | { kind: "index"; descriptors: Descriptor[] }
  | { kind: "none"; seen: string[] };

/**
 * Picks the first entry for `want` from an index, skipping attestation and unknown
 * entries. Nested indexes whose platform matches (or is absent) are returned as
 * candidates to descend into, in order.
 */
export function selectFromIndex(index: ImageIndex, want: Platform): IndexChoice {
  const seen: string[] = [];
  const nested: Descriptor[] = [];
  for (const entry of index.manifests) {
    if (isAttestation(entry)) continue;
    const p = entry.platform;
    if (p) seen.push(`${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`);
    const matches = p === undefined || platformMatches(p, want);
    if (!matches) continue;
    if (entry.mediaType === MEDIA.ociIndex || entry.mediaType === MEDIA.dockerList) {
      nested.push(entry);
    } else if (
      entry.mediaType === MEDIA.ociManifest || entry.mediaType === MEDIA.dockerManifest
    ) {
      if (p !== undefined) return { kind: "manifest", descriptor: entry };
    }
  }
  return nested.length > 0 ? { kind: "index", descriptors: nested } : { kind: "none", seen };
}

function isAttestation(entry: Descriptor): boolean {
  if (entry.annotations?.["vnd.docker.reference.type"] !== undefined) return true;
  return entry.platform?.os === "unknown" && entry.platform.architecture === "unknown";
}

function platformMatches(have: Platform, want: Platform): boolean {
  return normaliseArch(have.architecture) === want.architecture && have.os === want.os;
}

function normaliseArch(arch: string): string {
  if (arch === "x86_64" || arch === "x86-64") return "amd64";
  if (arch === "aarch64") return "arm64";
  return arch;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
