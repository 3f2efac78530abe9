/**
 * Free space on a filesystem, through `statfs(2)` (`node:fs` `statfsSync`, which needs
 * `--allow-sys=statfs` and no FFI), so a large write — a VM's memory snapshot — can be
 * refused before it starts instead of failing half-written.
 *
 * @module
 */

import { statfsSync } from "node:fs";
import { BangerError } from "../errors.ts";

/** Bytes an unprivileged writer may still use on the filesystem holding `path`. */
export function availableBytes(path: string): number {
  const s = statfsSync(path);
  return Number(s.bavail) * Number(s.bsize);
}

/**
 * Throws unless the filesystem holding `dir` has `bytes` free for `what`.
 *
 * @example
 * ```ts
 * requireFreeSpace("/var/lib/banger/vms/abc", 1 << 30, "the memory snapshot of dev");
 * ```
 * @throws {BangerError} `failed_precondition` naming both sizes and the directory.
 */
export function requireFreeSpace(dir: string, bytes: number, what: string): void {
  const free = availableBytes(dir);
  if (free >= bytes) return;
  throw new BangerError(
    `Cannot write ${what} (${mib(bytes)}) to ${dir}: only ${mib(free)} free`,
    { code: "failed_precondition", hint: "free space there (banger image cache prune helps)" },
  );
}

function mib(bytes: number): string {
  return `${Math.ceil(bytes / 2 ** 20)} MiB`;
}
