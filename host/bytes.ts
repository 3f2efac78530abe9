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
