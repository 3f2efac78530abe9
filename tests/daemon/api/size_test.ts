import { assertEquals } from "../../fixtures/assert.ts";
import { formatSize, formatSizeShort, parseSize } from "../../../daemon/api/size.ts";

Deno.test("parseSize() accepts binary units with optional B/iB suffixes", async (t) => {
  const cases: [string, number][] = [
    ["4GiB", 4 * 1024 ** 3],
    ["512M", 512 * 1024 ** 2],
    ["2G", 2 * 1024 ** 3],
    ["2g", 2 * 1024 ** 3],
    ["1.5G", 1.5 * 1024 ** 3],
    ["64MB", 64 * 1024 ** 2],
    ["1T", 1024 ** 4],
    ["4096", 4096],
    ["8 K", 8192],
  ];
  for (const [text, bytes] of cases) {
    await t.step(text, () => assertEquals(parseSize(text), bytes));
  }
});

Deno.test("parseSize() rejects zero, negatives, unknown units and garbage", async (t) => {
  for (const text of ["0", "0G", "-1", "-1G", "4XB", "G", "", "1.2.3G", "12 parsecs", "1e9"]) {
    await t.step(JSON.stringify(text), () => assertEquals(parseSize(text), undefined));
  }
});

Deno.test("formatSize() and formatSizeShort() pick the largest unit", () => {
  assertEquals(formatSize(1536 * 1024 ** 2), "1.5 GiB");
  assertEquals(formatSize(512), "512 B");
  assertEquals(formatSizeShort(8 * 1024 ** 3), "8G");
  assertEquals(formatSizeShort(512 * 1024 ** 2), "512M");
});
