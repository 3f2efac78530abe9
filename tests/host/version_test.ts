import { compareVersions } from "../../host/version.ts";
import { assertEquals } from "../fixtures/assert.ts";

Deno.test("compareVersions() orders numerically, pads missing parts, and ranks a pre-release below its release", () => {
  const ordered = ["1.5.0", "1.7.0", "1.8.0", "1.12.1", "1.13.0", "2.0.0-rc.1", "2.0.0", "10.0.0"];
  for (let i = 0; i < ordered.length; i++) {
    for (let j = 0; j < ordered.length; j++) {
      assertEquals(
        compareVersions(ordered[i], ordered[j]),
        Math.sign(i - j),
        `${ordered[i]} vs ${ordered[j]}`,
      );
    }
  }
  assertEquals(compareVersions("1.8", "1.8.0"), 0);
  assertEquals(compareVersions("1.43", "1.47.0"), -1);
});
