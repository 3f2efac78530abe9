/**
 * Writes a stream to a file, seeking over aligned all-zero blocks so that mostly empty
 * disk images (`rootfs.ext4`) stay sparse. Plain Deno file APIs, no FFI: the owner daemon
 * copies images with it (`image promote`), the catalog extracts bundles with it.
 *
 * @module
 */

const BLOCK = 4096;

/** Buffers writes into 4 KiB blocks and leaves holes where a block is all zeros. */
export class SparseWriter {
  readonly #file: Deno.FsFile;
  readonly #block = new Uint8Array(BLOCK);
  #fill = 0;
  #size = 0;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Appends `chunk`. */
  async write(chunk: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(BLOCK - this.#fill, chunk.length - offset);
      this.#block.set(chunk.subarray(offset, offset + take), this.#fill);
      this.#fill += take;
      offset += take;
      if (this.#fill === BLOCK) await this.#flush();
    }
  }

  /** Writes the last partial block and sets the file's length. */
  async finish(): Promise<void> {
    if (this.#fill > 0) await this.#flush();
    await this.#file.truncate(this.#size);
  }

  async #flush(): Promise<void> {
    const data = this.#block.subarray(0, this.#fill);
    if (data.some((b) => b !== 0)) {
      await this.#file.seek(this.#size, Deno.SeekMode.Start);
      let written = 0;
      while (written < data.length) written += await this.#file.write(data.subarray(written));
    }
    this.#size += this.#fill;
    this.#fill = 0;
  }
}

/**
 * Copies `from` to a new file `to` (with the source's permission bits unless `mode` is
 * given), leaving a hole wherever a 4 KiB block of the source is all zeros, whether or
 * not the source had a hole there.
 *
 * @example
 * ```ts
 * await copySparse("/data/disk.ext4", `${staging}/rootfs.ext4`);
 * ```
 */
export async function copySparse(
  from: string,
  to: string,
  options: { mode?: number; signal?: AbortSignal } = {},
): Promise<void> {
  using source = await Deno.open(from, { read: true });
  const mode = options.mode ?? ((await source.stat()).mode ?? 0o600) & 0o777;
  using target = await Deno.open(to, { write: true, createNew: true, mode });
  const writer = new SparseWriter(target);
  const buf = new Uint8Array(1024 * 1024);
  for (;;) {
    options.signal?.throwIfAborted();
    const n = await source.read(buf);
    if (n === null) break;
    await writer.write(buf.subarray(0, n));
  }
  await writer.finish();
}
