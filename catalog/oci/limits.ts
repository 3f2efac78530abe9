/**
 * How far one pulled image may expand. A layer is compressed: a 1 MiB blob can unpack to
 * 100 GiB, so the bound is on what is written, checked as it is written
 * (`LayerApplier`). The daemon's config (`max_image_bytes`, `max_image_entries`) overrides
 * these.
 *
 * @module
 */

/** The defaults. */
export const IMAGE_LIMITS = { maxBytes: 32 * 1024 ** 3, maxEntries: 2_000_000 } as const;
