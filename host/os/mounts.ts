/**
 * Which mount a path lives on, from `/proc/self/mountinfo`: the jail needs device nodes
 * (refused on `nodev`) and hard links to the VM's disks (same filesystem).
 *
 * @module
 */

import { readProcFile } from "./procfs.ts";

/** One mount, as `/proc/self/mountinfo` describes it. */
export interface MountInfo {
  /** Where it is mounted, e.g. `/var/lib`. */
  mountPoint: string;
  /** `major:minor` of the filesystem (what `st_dev` says). */
  device: string;
  /** e.g. `ext4`, `tmpfs`. */
  fsType: string;
  /** e.g. `/dev/vda1`. */
  source: string;
  /** Per-mount options, e.g. `["rw", "nodev", "relatime"]`. */
  options: string[];
}

/**
 * Parses mountinfo text. Pure.
 *
 * @example
 * ```ts
 * parseMountInfo("36 35 98:0 / /mnt rw,nodev - ext3 /dev/root rw\n")[0].options; // ["rw", "nodev"]
 * ```
 */
export function parseMountInfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (dash < 6 || fields.length < dash + 3) continue;
    mounts.push({
      mountPoint: unescapeOctal(fields[4]),
      device: fields[2],
      options: fields[5].split(","),
      fsType: fields[dash + 1],
      source: unescapeOctal(fields[dash + 2]),
    });
  }
  return mounts;
}

/**
 * The mount that holds `path` (an absolute, symlink-free path): the last-mounted one with
 * the longest mount point that is `path` or one of its parents. Pure.
 */
export function mountOf(mounts: readonly MountInfo[], path: string): MountInfo | undefined {
  let best: MountInfo | undefined;
  for (const m of mounts) {
    const inside = m.mountPoint === "/" || path === m.mountPoint ||
      path.startsWith(`${m.mountPoint}/`);
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/** The mount of `path` on this host (resolving symlinks first). */
export async function hostMountOf(path: string): Promise<MountInfo | undefined> {
  return mountOf(parseMountInfo(readProcFile("/proc/self/mountinfo")), await Deno.realPath(path));
}

/** mountinfo escapes space, tab, newline and backslash as `\ooo`. */
function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}
