/**
 * Folder-private: a byte reader over a `ReadableStream` for the tar reader: exact reads,
 * skips, and entry bodies streamed as views of the incoming chunks.
 *
 * @module
 */

import { printable } from "./names.ts";
import { TarError } from "../errors.ts";

const BLOCK = 512;
const MAX_META_BYTES = 1024 * 1024;

/** An entry body: iterate it, or skip what is left of it. */
export interface Body extends AsyncIterable<Uint8Array> {
  skipRest(): Promise<void>;
}

/** Reads a tar stream in blocks, bodies and skips. */
export class ByteReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #offset = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async #fill(): Promise<boolean> {
    while (this.#offset >= this.#chunk.length) {
      const { value, done } = await this.#reader.read();
      if (done) return false;
      this.#chunk = value;
      this.#offset = 0;
    }
    return true;
  }

  /** Reads `n` bytes; `null` on a clean EOF before the first byte. */
  async readExact(n: number, what: string): Promise<Uint8Array | null> {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (!(await this.#fill())) {
        if (got === 0) return null;
        throw truncated(what);
      }
      const take = Math.min(n - got, this.#chunk.length - this.#offset);
      out.set(this.#chunk.subarray(this.#offset, this.#offset + take), got);
      this.#offset += take;
      got += take;
    }
    return out;
  }

  /** Reads a meta entry's body (pax, GNU long name) of `size` bytes plus padding. */
  async readAll(size: number, name: string): Promise<Uint8Array> {
    if (size > MAX_META_BYTES) {
      throw new TarError(`Cannot read tar meta entry "${printable(name)}": it is too large`, {
        code: "invalid_argument",
      });
    }
    const data = size === 0 ? new Uint8Array(0) : await this.readExact(size, `"${name}"`);
    if (data === null) throw truncated(`"${name}"`);
    await this.skip(padding(size), `"${name}"`);
    return data;
  }

  async skip(n: number, what: string): Promise<void> {
    let left = n;
    while (left > 0) {
      if (!(await this.#fill())) throw truncated(what);
      const take = Math.min(left, this.#chunk.length - this.#offset);
      this.#offset += take;
      left -= take;
    }
  }

  /**
   * Skips an entry's padding. A stream that ends exactly where the padding would start
   * is a clean end, as in Go's archive/tar (umoci writes layers that end so).
   */
  async skipPadding(n: number, what: string): Promise<void> {
    if (n === 0 || !(await this.#fill())) return;
    await this.skip(n, what);
  }

  /** Up to `max` bytes as a view of the current chunk; `null` at EOF. */
  async next(max: number): Promise<Uint8Array | null> {
    if (!(await this.#fill())) return null;
    const take = Math.min(max, this.#chunk.length - this.#offset);
    const view = this.#chunk.subarray(this.#offset, this.#offset + take);
    this.#offset += take;
    return view;
  }

  body(size: number, path: string): Body {
    let left = size;
    let padded = false;
    const what = `entry "${printable(path)}"`;
    const finishPadding = async () => {
      if (left === 0 && !padded) {
        padded = true;
        await this.skipPadding(padding(size), what);
      }
    };
    const next = (max: number) => this.next(max);
    const skip = (n: number) => this.skip(n, what);
    return {
      async *[Symbol.asyncIterator]() {
        while (left > 0) {
          const view = await next(left);
          if (view === null) throw truncated(what);
          left -= view.length;
          yield view;
        }
        await finishPadding();
      },
      async skipRest() {
        await skip(left);
        left = 0;
        await finishPadding();
      },
    };
  }

  async drain(): Promise<void> {
    this.#offset = this.#chunk.length;
    for (;;) {
      const { done } = await this.#reader.read();
      if (done) return;
    }
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function truncated(what: string): TarError {
  return new TarError(`Cannot read tar ${what}: the archive ends inside it`, {
    code: "invalid_argument",
  });
}
