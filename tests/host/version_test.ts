import { compareVersions } from "../../host/version.ts";
import semver from "semver";
import { seededRandom } from "../fixtures/fuzz.ts";
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

// npm's semver is the oracle: every pair drawn from a pool of versions that covers numeric
// parts, pre-release identifiers (numeric, alphanumeric, of different lengths) and build
// metadata must order as semver.compare orders it.
Deno.test("compareVersions() orders every pair of a version pool as npm semver does", () => {
  const random = seededRandom(19);
  const part = () => String([0, 1, 2, 9, 10, 11, 100][Math.floor(random() * 7)]);
  const ident = () =>
    ["rc", "alpha", "beta", "0", "1", "2", "10", "x-y", "rc1"][Math.floor(random() * 9)];
  const pool = new Set<string>(["1.0.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0-alpha"]);
  while (pool.size < 120) {
    let version = `${part()}.${part()}.${part()}`;
    const pre = Math.floor(random() * 3);
    if (pre > 0) {
      version += "-" + Array.from({ length: pre }, ident).join(".");
    }
    pool.add(version);
  }
  const versions = [...pool];
  let pairs = 0;
  for (const a of versions) {
    for (const b of versions) {
      assertEquals(compareVersions(a, b), semver.compare(a, b), `${a} vs ${b}`);
      pairs++;
    }
  }
  assertEquals(pairs, versions.length ** 2);
});

Deno.test("compareVersions() ranks a string that is not a version below every version", () => {
  assertEquals(compareVersions("unknown", "1.0.0"), -1);
  assertEquals(compareVersions("1.0.0", "garbage"), 1);
  assertEquals(compareVersions("", ""), 0);
});
