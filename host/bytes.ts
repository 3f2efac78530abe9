/**
 * Byte-buffer helpers shared by the readers that collect a stream in chunks.
 *
 * @module
 */

/**
 * The chunks joined into one new buffer (always a copy, so chunks may alias a reused
 * read buffer). Pure.
 *
 * @example
 * ```ts
 * concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]); // Uint8Array [1, 2, 3]
 * ```
 */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Bytes as base64, for JSON fields that carry binary (disk file bodies, xattr values).
 * Pure.
 *
 * @example
 * ```ts
 * encodeBase64(new Uint8Array([104, 105])); // "aGk="
 * ```
 */
export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/**
 * The bytes of a base64 text (padding optional). Pure.
 *
 * @throws {DOMException} `InvalidCharacterError` for text that is not base64.
 */
export function decodeBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
