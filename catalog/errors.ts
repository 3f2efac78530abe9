/**
 * The error classes of `catalog/`: one per concern, each a {@linkcode BangerError} with a
 * stable code and a message that names the image, blob, path or URL involved.
 *
 * @module
 */

import { BangerError } from "../host/errors.ts";

/**
 * An OCI reference, registry, manifest or blob problem: a malformed reference, an
 * unreachable or refusing registry, a manifest or blob whose digest or size does not
 * match, an unsupported media type.
 *
 * @example
 * ```ts
 * throw new OciError('Cannot parse image reference "Debian": repository names must be lowercase', {
 *   code: "invalid_argument",
 * });
 * ```
 */
export class OciError extends BangerError {}

/**
 * A tar stream that cannot be read: bad header checksum, truncated entry, malformed pax
 * record, unsupported entry type.
 *
 * @example
 * ```ts
 * throw new TarError('Cannot read tar entry "etc/passwd": the archive ends inside it');
 * ```
 */
export class TarError extends BangerError {}

/**
 * A layer that cannot be applied safely: a path escaping the root, a write through a
 * symlink, a dangling hardlink, a bare whiteout, a name the ext4 writer cannot encode.
 *
 * @example
 * ```ts
 * throw new LayerError('Cannot apply entry "../etc/passwd": it leaves the root', {
 *   code: "invalid_argument",
 * });
 * ```
 */
export class LayerError extends BangerError {}

/**
 * A bundle that cannot be fetched or kept: a download failure, a sha256 or size
 * mismatch, an unexpected or unsafe entry.
 *
 * @example
 * ```ts
 * throw new BundleError('Cannot fetch bundle "https://x/y.tar.zst": sha256 mismatch');
 * ```
 */
export class BundleError extends BangerError {}
