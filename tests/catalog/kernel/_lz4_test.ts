import { decompressLz4Legacy, Lz4Error } from "../../../catalog/kernel/_lz4.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function frame(...blocks: number[][]): Uint8Array {
  const out = [0x02, 0x21, 0x4c, 0x18];
  for (const b of blocks) out.push(b.length & 255, (b.length >> 8) & 255, 0, 0, ...b);
  return new Uint8Array(out);
}

Deno.test("decompressLz4Legacy() copies literals and matches, including overlapping ones", () => {
  // "abc", then a 6-byte match at offset 3, then "x", a 5-byte match at offset 1, "end".
  const block = [0x32, ...enc("abc"), 3, 0, 0x11, ...enc("x"), 1, 0, 0x30, ...enc("end")];
  assertEquals(dec(decompressLz4Legacy(frame(block))), "abcabcabcxxxxxxend");
});

Deno.test("decompressLz4Legacy() reads extended lengths and stops at an appended size", () => {
  const literals = "L".repeat(20); // 15 + 5
  const block = [0xf0, 5, ...enc(literals)];
  const withSize = new Uint8Array([...frame(block), 20, 0, 0, 0x10]); // size too large for a block
  assertEquals(dec(decompressLz4Legacy(withSize)), literals);
});

Deno.test("decompressLz4Legacy() rejects a missing magic and a corrupt first block", async (t) => {
  await t.step("magic", () => {
    assertThrows(() => decompressLz4Legacy(enc("nope")), Lz4Error, "magic");
  });
  await t.step("offset beyond output", () => {
    assertThrows(() => decompressLz4Legacy(frame([0x10, 0x61, 9, 0])), Lz4Error, "offset 9");
  });
});

gatedTest(
  "decompressLz4Legacy() matches the lz4 program on multi-block input",
  [programs("lz4")],
  async () => {
    const input = new Uint8Array(20 << 20);
    let seed = 7;
    for (let i = 0; i < input.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      input[i] = i % 1000 < 600 ? (seed >>> 24) & 7 : (i >> 4) & 255;
    }
    const file = await Deno.makeTempFile();
    try {
      await Deno.writeFile(file, input);
      const { stdout } = await new Deno.Command("lz4", { args: ["-l", "-c", file] }).output();
      const out = decompressLz4Legacy(stdout);
      assertEquals(out.length, input.length);
      assertEquals(out.every((b, i) => b === input[i]), true);
    } finally {
      await Deno.remove(file);
    }
  },
);
