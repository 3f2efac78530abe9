/**
 * What a device-mapper device is made of, read from sysfs (no ioctl, no root): its name
 * in `/sys/class/block/dm-N/dm/name`, the devices under it in `…/slaves/`, and for a
 * loop the file in `…/loop/backing_file`. The root helper uses it to remove only the dm
 * devices that sit on its own instance's files.
 *
 * @module
 */

import { listProcDirIfExists as list, readProcFileIfExists } from "../os/procfs.ts";

/** How deep dm devices may stack (a snapshot over a padded origin is 2). */
const MAX_DEPTH = 4;

/**
 * The loop backing files under dm device `name`, through any stacked dm devices.
 *
 * @param sys the sysfs mount (tests pass a fake tree). @default {"/sys"}
 * @returns `undefined` when no dm device has that name; a device over anything but loops
 *   yields `"<dev> (not a loop device)"` entries, which match no banger path.
 * @example
 * ```ts
 * dmBackingFiles("bg-root-0a1b2c3d4e5f6a7b"); // ["/var/lib/banger/images/…/rootfs.ext4", "…/root.cow"]
 * ```
 */
export function dmBackingFiles(name: string, sys = "/sys"): string[] | undefined {
  const dev = dmDeviceNamed(name, sys);
  return dev === undefined ? undefined : filesUnder(dev, sys, 0);
}

function dmDeviceNamed(name: string, sys: string): string | undefined {
  for (const entry of list(`${sys}/class/block`)) {
    if (!entry.startsWith("dm-")) continue;
    if (readProcFileIfExists(`${sys}/class/block/${entry}/dm/name`)?.trim() === name) return entry;
  }
  return undefined;
}

function filesUnder(dev: string, sys: string, depth: number): string[] {
  const files: string[] = [];
  for (const slave of list(`${sys}/class/block/${dev}/slaves`)) {
    if (slave.startsWith("dm-") && depth < MAX_DEPTH) {
      files.push(...filesUnder(slave, sys, depth + 1));
      continue;
    }
    const backing = readProcFileIfExists(`${sys}/class/block/${slave}/loop/backing_file`)?.trim();
    files.push(backing || `${slave} (not a loop device)`);
  }
  return files;
}
