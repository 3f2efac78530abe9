/**
 * Ordering of release versions (`1.16.1`, `2.0.0-rc.1`, `1.8`): SemVer precedence, with
 * missing parts counting as 0. One comparator for the whole tree (the Firecracker gate, the
 * doctor's tool checks, the CLI's daemon-version check), on `compare-versions` — imported
 * from its ESM build, so it costs the CLI ~1 ms at start-up where its CommonJS entry
 * costs ~20 ms. Named in full rather than through deno.json's import map, because the fake
 * `firecracker` in the tests runs this module from a symlink with no deno.json near it.
 *
 * @module
 */

import {
  compareVersions as compareSemver,
  validate,
} from "npm:compare-versions@6.1.1/lib/esm/index.js";

/**
 * Compares two versions: negative when `a` is older, positive when newer, 0 when equal.
 * Missing parts count as 0 (`1.8` equals `1.8.0`), a pre-release ranks below its release
 * and pre-release identifiers compare as SemVer says (`rc.2` below `rc.10`). A string that
 * is not a version ranks below every version, so a gate on it fails closed. Pure.
 *
 * @example
 * ```ts
 * compareVersions("1.13.0", "1.8.0"); // 1
 * compareVersions("1.0.0-rc.1", "1.0.0"); // -1
 * ```
 */
export function compareVersions(a: string, b: string): number {
  const validA = validate(a);
  const validB = validate(b);
  if (!validA || !validB) return validA === validB ? 0 : validA ? 1 : -1;
  return compareSemver(a, b);
}
