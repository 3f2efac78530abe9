/**
 * OCI image references: parsing with Docker's defaults (`debian` is
 * `docker.io/library/debian:latest`), validation against the distribution grammar, and
 * the default banger image name derived from a reference.
 *
 * @module
 */

import { OciError } from "../errors.ts";

/**
 * A parsed, validated image reference. At least one of `tag` and `digest` is set: a
 * reference with neither gets the tag `latest`.
 */
export interface ImageRef {
  /** Registry as users name it: `docker.io`, `ghcr.io`, `127.0.0.1:5000`. */
  registry: string;
  /** `host[:port]` to contact: `registry-1.docker.io` for `docker.io`. */
  endpoint: string;
  /** Repository path: `library/debian`. */
  repository: string;
  /** The tag, when the reference names one (or `latest` when it names nothing). */
  tag?: string;
  /** `sha256:<64 hex>`, when the reference pins a digest. */
  digest?: string;
}

const DOCKER_HUB = "docker.io";
const DOCKER_HUB_ENDPOINT = "registry-1.docker.io";
const MAX_NAME_LENGTH = 255;

const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN_RE = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`,
);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const SHA256_RE = /^sha256:[a-f0-9]{64}$/;

/**
 * Parses an image reference such as `debian:bookworm`, `ghcr.io/o/r@sha256:…` or
 * `127.0.0.1:5000/x/y:tag@sha256:…`.
 *
 * @throws {OciError} (`invalid_argument`) naming the reference and what is wrong with it.
 * @example
 * ```ts
 * const ref = parseImageRef("debian:bookworm");
 * ref.endpoint;   // "registry-1.docker.io"
 * ref.repository; // "library/debian"
 * ```
 */
export function parseImageRef(text: string): ImageRef {
  const bad = (why: string) =>
    new OciError(`Cannot parse image reference "${text}": ${why}`, {
      code: "invalid_argument",
      hint: "use a reference like debian:bookworm or registry.example.com/team/image:tag",
    });
  if (text.trim() !== text || text === "") throw bad("it is empty or has surrounding spaces");
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw bad(`"${digest}" is not a valid digest`);
    if (!SHA256_RE.test(digest)) throw bad("only sha256 digests (64 lowercase hex) are supported");
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw bad(`"${tag}" is not a valid tag`);
  }
  let registry = DOCKER_HUB;
  let path = rest;
  const slash = rest.indexOf("/");
  if (slash !== -1 && looksLikeDomain(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    path = rest.slice(slash + 1);
    if (!DOMAIN_RE.test(registry)) throw bad(`"${registry}" is not a valid registry host`);
  }
  if (registry === "index.docker.io") registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !path.includes("/")) path = `library/${path}`;
  for (const component of path.split("/")) {
    if (!PATH_COMPONENT_RE.test(component)) {
      throw bad(
        component === ""
          ? "the repository name is empty or has an empty component"
          : `repository component "${component}" must be lowercase letters, digits and separators`,
      );
    }
  }
  if (registry.length + 1 + path.length > MAX_NAME_LENGTH) {
    throw bad(`the name is longer than ${MAX_NAME_LENGTH} characters`);
  }
  return {
    registry,
    endpoint: registry === DOCKER_HUB ? DOCKER_HUB_ENDPOINT : registry,
    repository: path,
    tag: tag ?? (digest === undefined ? "latest" : undefined),
    digest,
  };
}

function looksLikeDomain(first: string): boolean {
  return first.includes(".") || first.includes(":") || first === "localhost" ||
    first.toLowerCase() !== first;
}

/**
 * The canonical text of a reference: `docker.io/library/debian:bookworm`,
 * `ghcr.io/o/r:tag@sha256:…`.
 *
 * @example
 * ```ts
 * formatImageRef(parseImageRef("debian")); // "docker.io/library/debian:latest"
 * ```
 */
export function formatImageRef(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ""}${
    ref.digest !== undefined ? `@${ref.digest}` : ""
  }`;
}

/**
 * The banger image name a pull of `ref` gets unless the user names it: the last
 * repository component and the tag (or the first 12 hex digits of the digest), as a DNS
 * label (1–63 of `a-z0-9-`, no leading or trailing `-`).
 *
 * @example
 * ```ts
 * defaultImageName(parseImageRef("docker.io/library/debian:bookworm")); // "debian-bookworm"
 * ```
 */
export function defaultImageName(ref: ImageRef): string {
  const base = ref.repository.split("/").pop() ?? "image";
  const suffix = ref.tag ?? ref.digest?.slice("sha256:".length, "sha256:".length + 12) ?? "";
  const label = `${base}-${suffix}`.toLowerCase().replace(/[^a-z0-9]+/g, "-");
  const trimmed = label.replace(/^-+/, "").slice(0, 63).replace(/-+$/, "");
  return trimmed === "" ? "image" : trimmed;
}
