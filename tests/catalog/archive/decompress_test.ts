import { assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { TarError } from "../../../catalog/errors.ts";
import { decompress } from "../../../catalog/archive/decompress.ts";
import { gzipSync, zstdCompressSync } from "node:zlib";

const text = "layer bytes ".repeat(5000);
const plain = new TextEncoder().encode(text);

async function roundTrip(bytes: Uint8Array<ArrayBuffer>) {
  const { compression, stream } = await decompress(new Blob([bytes]).stream());
  return { compression, text: await new Response(stream).text() };
}

Deno.test("decompress() sniffs gzip, zstd and plain streams by their magic bytes", async () => {
  assertEquals(await roundTrip(new Uint8Array(gzipSync(plain))), { compression: "gzip", text });
  assertEquals(await roundTrip(new Uint8Array(zstdCompressSync(plain))), {
    compression: "zstd",
    text,
  });
  assertEquals(await roundTrip(plain), { compression: "none", text });
  assertEquals(await roundTrip(new Uint8Array([1])), { compression: "none", text: "\x01" });
  assertEquals(await roundTrip(new Uint8Array()), { compression: "none", text: "" });
});

Deno.test("decompress() refuses xz and bzip2 by name", async () => {
  const xz = new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2]);
  await assertRejects(() => decompress(new Blob([xz]).stream()), TarError, "xz");
  const bz = new TextEncoder().encode("BZh91AY&SY");
  await assertRejects(() => decompress(new Blob([bz]).stream()), TarError, "bzip2");
});
