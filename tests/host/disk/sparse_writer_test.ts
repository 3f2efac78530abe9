import { copySparse } from "../../../host/disk/sparse_writer.ts";
import { assert, assertEquals, assertRejects } from "../../fixtures/assert.ts";

/** Bytes the file system allocated for `path` (`st_blocks` × 512). */
async function allocated(path: string): Promise<number> {
  return ((await Deno.stat(path)).blocks ?? 0) * 512;
}

Deno.test("copySparse() copies every byte, leaves holes for zero blocks of a fully written source and keeps the mode", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // 8 MiB written out in full (no holes in the source), data only at three places, and a
    // length that is not a multiple of the block size.
    const size = 8 * 1024 * 1024 + 123;
    const bytes = new Uint8Array(size);
    bytes.set([1, 2, 3], 0);
    bytes.set([4], 5 * 1024 * 1024 + 7);
    bytes.set([9], size - 1);
    await Deno.writeFile(`${dir}/src`, bytes, { mode: 0o640 });
    await Deno.chmod(`${dir}/src`, 0o640);
    assert(await allocated(`${dir}/src`) >= size, "the source is fully allocated");

    await copySparse(`${dir}/src`, `${dir}/dst`);
    assertEquals(await Deno.readFile(`${dir}/dst`), bytes);
    assert(await allocated(`${dir}/dst`) <= 64 * 1024, `${await allocated(`${dir}/dst`)} bytes`);
    assertEquals(((await Deno.stat(`${dir}/dst`)).mode ?? 0) & 0o777, 0o640);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("copySparse() refuses an existing target and stops when cancelled", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/src`, new Uint8Array(4096).fill(7));
    await Deno.writeTextFile(`${dir}/dst`, "keep");
    await assertRejects(() => copySparse(`${dir}/src`, `${dir}/dst`), Deno.errors.AlreadyExists);
    assertEquals(await Deno.readTextFile(`${dir}/dst`), "keep");
    const cancelled = AbortSignal.abort();
    await assertRejects(() => copySparse(`${dir}/src`, `${dir}/new`, { signal: cancelled }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
