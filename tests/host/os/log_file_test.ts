import { capLog, readFrom, readTail } from "../../../host/os/log_file.ts";
import { assert, assertEquals } from "../../fixtures/assert.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

gatedTest(
  "capLog() bounds a log still being appended to, keeps its tail, and loses nothing written after (fallocate)",
  [programs("fallocate")],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bgl-" });
    try {
      const path = `${dir}/serial.log`;
      using writer = await Deno.open(path, { append: true, create: true });
      const line = (i: number) =>
        enc.encode(`line ${String(i).padStart(8, "0")} ${"x".repeat(100)}\n`);
      let i = 0;
      while ((await Deno.stat(path)).size < 12 << 20) {
        const batch = Array.from({ length: 8192 }, () => dec.decode(line(i++))).join("");
        await writer.write(enc.encode(batch));
      }
      const last = i - 1;
      assertEquals(await capLog(path, 1 << 20, 2 << 20), true);
      const st = await Deno.stat(path);
      assert((st.blocks ?? 0) * 512 <= (1 << 20) + 8192, `${(st.blocks ?? 0) * 512} bytes on disk`);
      const tail = dec.decode((await readTail(path, 4 << 20)).bytes);
      assert(tail.length <= (1 << 20) + 4096, `tail of ${tail.length} bytes`);
      assert(tail.endsWith(dec.decode(line(last))), "the newest line is kept");
      assertEquals(tail.includes("\0"), false, "the punched head reads as nothing");
      const { size } = await readTail(path, 1);
      await writer.write(enc.encode("after the cap\n"));
      const next = await readFrom(path, size, 1 << 20);
      assertEquals(dec.decode(next.bytes), "after the cap\n");
      assertEquals(await capLog(path, 1 << 20, 2 << 20), false, "under the cap: untouched");
      const small = await readFrom(path, 0, 64);
      assertEquals(
        small.bytes.length > 0 && !small.bytes.includes(0),
        true,
        "offset 0 skips the hole",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("readTail() and readFrom() of a missing file are empty", async () => {
  assertEquals(await readTail("/nonexistent/serial.log", 10), { bytes: new Uint8Array(), size: 0 });
  assertEquals(await readFrom("/nonexistent/serial.log", 5, 10), {
    bytes: new Uint8Array(),
    offset: 0,
  });
});
