/**
 * Ordering of release versions (`1.16.1`, `2.0.0-rc.1`): numeric parts compare as
 * numbers, and a pre-release ranks below its release, as in SemVer.
 *
 * @module
 */

/**
 * Compares two versions: negative when `a` is older, positive when newer, 0 when equal.
 * Missing parts count as 0 (`1.8` equals `1.8.0`). Pure.
 *
 * @example
 * ```ts
 * compareVersions("1.13.0", "1.8.0"); // 1
 * compareVersions("1.0.0-rc.1", "1.0.0"); // -1
 * ```
 */
export function compareVersions(a: string, b: string): number {
  const [coreA, preA] = split(a);
  const [coreB, preB] = split(b);
  for (let i = 0; i < Math.max(coreA.length, coreB.length); i++) {
    const d = (coreA[i] ?? 0) - (coreB[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (preA === preB) return 0;
  if (preA === undefined) return 1;
  if (preB === undefined) return -1;
  return preA < preB ? -1 : 1;
}

function split(version: string): [number[], string | undefined] {
  const dash = version.indexOf("-");
  const core = dash < 0 ? version : version.slice(0, dash);
  const pre = dash < 0 ? undefined : version.slice(dash + 1);
  return [core.split(".").map((part) => Number(part) || 0), pre];
}
