/**
 * The image and kernel catalogs: embedded `images.json` / `kernels.json`, or a mirror's
 * copies under `catalog_url`. An entry either names a bundle (url + sha256 + size, which
 * is preferred when set) or says how to build the artifact on this host (the golden image
 * recipe, the Debian kernel package).
 *
 * @module
 */

import * as s from "../host/schema.ts";
import { BangerError } from "../host/errors.ts";
import embeddedImages from "./images.json" with { type: "json" };
import embeddedKernels from "./kernels.json" with { type: "json" };

/** A catalog that cannot be read or does not validate. */
export class CatalogError extends BangerError {}

const catalogName = s.string({
  pattern: /^[a-z0-9][a-z0-9._-]{0,62}$/,
  expected: "a catalog name (1–63 of a-z 0-9 . _ -)",
});

const bundle = s.object({
  url: s.string({ pattern: /^(https?:\/\/|\.?\/|[a-zA-Z0-9_.-]+)/, expected: "a URL" }),
  sha256: s.string({ pattern: /^(sha256:)?[0-9a-f]{64}$/, expected: "a sha256 hex digest" }),
  size: s.number({ int: true, min: 1 }),
});

const imageEntry = s.object({
  name: catalogName,
  arch: s.literal("x86_64"),
  description: s.string(),
  kernel_ref: catalogName,
  /** Built on the host from this recipe when no bundle is given. */
  recipe: s.optional(s.literal("debian-bookworm")),
  bundle: s.optional(bundle),
});

const kernelEntry = s.object({
  name: catalogName,
  arch: s.literal("x86_64"),
  description: s.string(),
  /** Built on the host from this Debian package when no bundle is given. */
  debian_package: s.optional(s.string({ pattern: /^[a-z0-9][a-z0-9.+-]+$/ })),
  bundle: s.optional(bundle),
});

const imagesFile = s.object({
  version: s.number({ int: true, min: 1, max: 1 }),
  images: s.array(imageEntry),
});
const kernelsFile = s.object({
  version: s.number({ int: true, min: 1, max: 1 }),
  kernels: s.array(kernelEntry),
});

/** One image the catalog offers. */
export type ImageEntry = s.Infer<typeof imageEntry>;
/** One kernel the catalog offers. */
export type KernelEntry = s.Infer<typeof kernelEntry>;
/** Both catalogs. */
export interface Catalogs {
  images: ImageEntry[];
  kernels: KernelEntry[];
}

/** Parses catalog JSON bodies. Bundle URLs relative to `base` are resolved. */
export function parseCatalogs(images: unknown, kernels: unknown, base?: string): Catalogs {
  const parse = <T>(schema: s.Schema<T>, raw: unknown, file: string): T => {
    try {
      return schema.parse(raw);
    } catch (err) {
      throw new CatalogError(`Cannot use catalog ${file}: ${(err as Error).message}`, {
        code: "failed_precondition",
        cause: err,
      });
    }
  };
  const resolve = <E extends { bundle?: { url: string } }>(e: E): E =>
    e.bundle && base ? { ...e, bundle: { ...e.bundle, url: new URL(e.bundle.url, base).href } } : e;
  return {
    images: parse(imagesFile, images, "images.json").images.map(resolve),
    kernels: parse(kernelsFile, kernels, "kernels.json").kernels.map(resolve),
  };
}

/**
 * Loads the catalogs: the embedded ones, or `<catalogUrl>/images.json` and
 * `kernels.json` from a mirror.
 *
 * @throws {CatalogError} when the mirror cannot be fetched or its files do not validate.
 * @example
 * ```ts
 * const { images } = await loadCatalogs({ catalogUrl: "" });
 * images[0].name; // "debian-bookworm"
 * ```
 */
export async function loadCatalogs(
  options: { catalogUrl: string; signal?: AbortSignal },
): Promise<Catalogs> {
  if (!options.catalogUrl) return parseCatalogs(embeddedImages, embeddedKernels);
  const base = options.catalogUrl.endsWith("/") ? options.catalogUrl : `${options.catalogUrl}/`;
  const get = async (file: string): Promise<unknown> => {
    const url = new URL(file, base).href;
    let res: Response;
    try {
      res = await fetch(url, { signal: options.signal });
    } catch (err) {
      throw new CatalogError(`Cannot fetch catalog "${url}": ${(err as Error).message}`, {
        code: "unavailable",
        hint: "check catalog_url in config.toml",
      });
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new CatalogError(`Cannot fetch catalog "${url}": HTTP ${res.status}`, {
        code: "unavailable",
        hint: "check catalog_url in config.toml",
      });
    }
    try {
      return await res.json();
    } catch {
      throw new CatalogError(`Cannot parse catalog "${url}": not JSON`, {
        code: "failed_precondition",
      });
    }
  };
  const [images, kernels] = await Promise.all([get("images.json"), get("kernels.json")]);
  return parseCatalogs(images, kernels, base);
}
