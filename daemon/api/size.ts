/**
 * Human sizes ("4GiB", "512M", "2G") to bytes and back.
 *
 * @module
 */

const UNITS: Record<string, number> = {
  "": 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
};

const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|B)?$/i;

/** What {@linkcode parseSize} accepts, for messages. */
export const SIZE_EXPECTED =
  'a positive size such as "512M", "2G" or "4GiB" (units K, M, G, T; powers of 1024)';

/**
 * Parses a size into bytes. Units are binary (K = 1024); "B", "iB" suffixes are allowed;
 * a bare number is bytes.
 *
 * @returns the size in bytes, or `undefined` when `text` is not a positive size.
 * @example
 * ```ts
 * parseSize("4GiB"); // 4294967296
 * parseSize("0");    // undefined
 * ```
 */
export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  if (!m) return undefined;
  const unit = UNITS[(m[2] ?? "").toUpperCase()];
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) return undefined;
  return bytes;
}

/** Formats bytes with the largest binary unit that keeps one decimal, e.g. "1.5 GiB". */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  const text = i === 0 || Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${text} ${units[i]}`;
}

/** Compact form for tables and the spec line: "8G", "512M", "1.5G". */
export function formatSizeShort(bytes: number): string {
  for (const [unit, size] of [["T", 1024 ** 4], ["G", 1024 ** 3], ["M", 1024 ** 2]] as const) {
    if (bytes >= size) {
      const v = bytes / size;
      return `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`;
    }
  }
  return `${Math.ceil(bytes / 1024)}K`;
}
