/**
 * Per-VM root disks: a copy-on-write view of an image's `rootfs.ext4` that the guest
 * may write while the image stays untouched. Three strategies, best first:
 *
 * - `dm-snapshot`: the base on a read-only loop, a sparse per-VM COW file (`root.cow`)
 *   on a second loop, and a persistent dm `snapshot` over them (zero-padded origin when
 *   the COW is larger); the guest gets `/dev/dm-<minor>`.
 * - `reflink`: a `FICLONE` copy (`root.ext4`), instant on XFS/btrfs.
 * - `sparse-copy`: a copy that walks `SEEK_DATA`/`SEEK_HOLE` and never reads holes.
 *
 * The per-VM file persists across stop/start (the COW keeps the guest's writes) and is
 * deleted only with the VM. The returned {@linkcode RootDiskHandle} is plain JSON so the
 * daemon can persist it and release everything from it after a crash.
 *
 * @module
 */

import { dirname } from "node:path";
import { aggregateErrors, BangerError } from "../errors.ts";
import { bytesToSectors, deviceMapperSupport, dmCreate, dmRemove, planSnapshot } from "./dm.ts";
import { vmFiles } from "../layout.ts";
import { dmBackingFiles } from "./dm_sysfs.ts";
import { copyImage, FICLONE, probeReflink } from "./file_copy.ts";
import { because, Fd, O_RDONLY, O_RDWR } from "../os/libc.ts";
import {
  attachLoop,
  blockDeviceSize,
  detachLoop,
  type LoopAttachment,
  loopBackingFile,
  loopStatus,
} from "./loop.ts";
import * as s from "../schema.ts";

export { FICLONE };

/** How a root disk is made. */
export type RootDiskStrategy = "dm-snapshot" | "reflink" | "sparse-copy";

/** A root disk could not be created or released. */
export class RootDiskError extends BangerError {}

/**
 * Everything a root disk holds, as plain JSON (persisted in `handles.json`).
 * `loops` and `dmNames` are empty unless `strategy` is `dm-snapshot`.
 */
export interface RootDiskHandle {
  /** How it was made. */
  strategy: RootDiskStrategy;
  /** What the VMM opens as the guest's `/dev/vda`. */
  devicePath: string;
  /** The image's read-only `rootfs.ext4`. */
  baseImage: string;
  /** The per-VM file: the COW (`root.cow`) or the copy (`root.ext4`). */
  vmFile: string;
  /** Loop devices attached for this disk, with the file each must still be backed by. */
  loops: { path: string; backingFile: string }[];
  /** dm devices in creation order (padded origin first, snapshot last). */
  dmNames: string[];
  /** Size of the device the guest sees, in bytes. */
  sizeBytes: number;
}

/** Parses a persisted {@linkcode RootDiskHandle}, rejecting unknown fields. */
export const rootDiskHandleSchema: s.Schema<RootDiskHandle> = s.object({
  strategy: s.literal("dm-snapshot", "reflink", "sparse-copy"),
  devicePath: s.string({ min: 1 }),
  baseImage: s.string({ min: 1 }),
  vmFile: s.string({ min: 1 }),
  loops: s.array(s.object({ path: s.string({ min: 1 }), backingFile: s.string({ min: 1 }) })),
  dmNames: s.array(s.string({ min: 1 })),
  sizeBytes: s.number({ int: true, min: 0 }),
});

/** Which strategy a host would use for a directory, and why. */
export interface StrategyReport {
  /** What {@linkcode createRootDisk} would use. */
  strategy: RootDiskStrategy;
  /** Why, for the doctor's report. */
  reason: string;
}

/**
 * Says which strategy {@linkcode createRootDisk} would pick for VM files under `dir`
 * (for `banger doctor`): dm when device-mapper answers, else reflink when a probe clone
 * inside `dir` works, else sparse copy.
 *
 * @example
 * ```ts
 * await rootDiskStrategy("/home/me/.local/state/banger/vms");
 * // { strategy: "sparse-copy", reason: "no /dev/mapper/control …; reflink: … (EOPNOTSUPP)" }
 * ```
 */
export async function rootDiskStrategy(dir: string): Promise<StrategyReport> {
  const dm = deviceMapperSupport();
  if (dm.available) {
    return { strategy: "dm-snapshot", reason: `device-mapper ${dm.version} is available` };
  }
  const probe = await probeReflink(dir);
  return probe === undefined
    ? { strategy: "reflink", reason: `${dm.reason}; "${dir}" supports reflinks` }
    : { strategy: "sparse-copy", reason: `${dm.reason}; no reflinks in "${dir}": ${probe}` };
}

/** Options for {@linkcode createRootDisk}. */
export interface CreateRootDiskOptions {
  /** The VM's id; names its dm devices `bg-root-<id>`. */
  id: string;
  /** The image's `rootfs.ext4`. */
  baseImage: string;
  /** The VM's directory; holds `root.cow` or `root.ext4`. */
  vmDir: string;
  /**
   * The root disk's size (`system_overlay_size`): the COW file for `dm-snapshot`, the
   * copy's size otherwise, grown (sparse, costing nothing until written) when the image
   * is smaller; the guest grows its filesystem to it at boot.
   */
  cowBytes: number;
  /** Force a strategy instead of the best available one. */
  strategy?: RootDiskStrategy;
}

/**
 * Makes the VM's root disk, reusing its existing COW or copy (a restart keeps the
 * guest's writes). On failure everything made so far is released.
 *
 * @throws {RootDiskError} when the chosen strategy fails (a forced `reflink` on a
 *   filesystem without reflinks, for example) or the base cannot be read.
 * @example
 * ```ts
 * const disk = await createRootDisk({ id: "abc", baseImage, vmDir, cowBytes: 8 << 30 });
 * await writeJsonAtomic(`${vmDir}/handles.json`, { rootDisk: disk });
 * ```
 */
export async function createRootDisk(options: CreateRootDiskOptions): Promise<RootDiskHandle> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(options.id)) {
    throw new RootDiskError(`Cannot create a root disk for VM id "${options.id}": invalid id`, {
      code: "invalid_argument",
    });
  }
  const strategy = options.strategy ??
    (deviceMapperSupport().available ? "dm-snapshot" : undefined);
  if (strategy === "dm-snapshot") return await createSnapshot(options);
  const vmFile = `${options.vmDir}/${vmFiles.rootCopy}`;
  const base = { baseImage: options.baseImage, vmFile, loops: [], dmNames: [] };
  try {
    await Deno.mkdir(options.vmDir, { recursive: true });
    if (await exists(vmFile)) {
      // Reused after a restart: report what a fresh copy here would have been.
      const used: RootDiskStrategy = strategy ??
        ((await probeReflink(options.vmDir)) === undefined ? "reflink" : "sparse-copy");
      const sizeBytes = await growTo(vmFile, options.cowBytes);
      return { ...base, strategy: used, devicePath: vmFile, sizeBytes };
    }
    const used = await copyImage(options.baseImage, vmFile, strategy);
    const sizeBytes = await growTo(vmFile, options.cowBytes);
    return { ...base, strategy: used, devicePath: vmFile, sizeBytes };
  } catch (err) {
    throw new RootDiskError(
      `Cannot create root disk "${vmFile}" from "${options.baseImage}": ${because(err)}`,
      { code: err instanceof BangerError ? err.code : "internal", cause: err },
    );
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Grows `path` (sparse) to `bytes` when smaller; returns its size. Never shrinks. */
async function growTo(path: string, bytes: number): Promise<number> {
  const size = (await Deno.stat(path)).size;
  if (size >= bytes) return size;
  await Deno.truncate(path, bytes);
  return bytes;
}

/** The dm-snapshot strategy by path (root's own files); a COW it made is removed on failure. */
async function createSnapshot(options: CreateRootDiskOptions): Promise<RootDiskHandle> {
  const vmFile = `${options.vmDir}/${vmFiles.rootCow}`;
  let made = false;
  try {
    if (!(await exists(vmFile))) {
      await Deno.mkdir(dirname(vmFile), { recursive: true });
      using cow = await Deno.open(vmFile, { write: true, createNew: true, mode: 0o600 });
      await cow.truncate(options.cowBytes);
      made = true;
    } else {
      await growTo(vmFile, options.cowBytes); // the root size was raised (vm set)
    }
    using base = Fd.open(options.baseImage, O_RDONLY, "open base image");
    using cow = Fd.open(vmFile, O_RDWR, "open COW file");
    return snapshotOver(options.id, base, cow);
  } catch (err) {
    if (made) await Deno.remove(vmFile).catch(() => {});
    if (err instanceof RootDiskError) throw err;
    throw new RootDiskError(`Cannot create dm snapshot "bg-root-${options.id}": ${because(err)}`, {
      code: err instanceof BangerError ? err.code : "internal",
      cause: err,
    });
  }
}

/**
 * A persistent dm snapshot `bg-root-<id>` of the open `base` (read-only) with the open
 * `cow`: each loop is configured from its descriptor and then checked, by device and
 * inode, to be backed by exactly that file. Undoes its own steps in reverse on failure.
 *
 * @throws {RootDiskError} naming the snapshot.
 */
export function snapshotOver(id: string, base: Fd, cow: Fd): RootDiskHandle {
  const name = `bg-root-${id}`;
  const undo: (() => unknown)[] = [];
  const attachments: LoopAttachment[] = [];
  try {
    removeStaleSnapshot(name, [base.path, cow.path]);
    const baseLoop = attachLoop(base, { readOnly: true, autoclear: true });
    attachments.push(baseLoop);
    const cowLoop = attachLoop(cow, { autoclear: true });
    attachments.push(cowLoop);
    for (const [loop, file] of [[baseLoop, base], [cowLoop, cow]] as const) {
      requireBackedBy(loop.device.path, file);
    }
    const plan = planSnapshot({
      origin: baseLoop.device.path,
      cow: cowLoop.device.path,
      originSectors: bytesToSectors(blockDeviceSize(baseLoop.device.path)),
      cowSectors: bytesToSectors(blockDeviceSize(cowLoop.device.path)),
    });
    const dmNames: string[] = [];
    let origin = baseLoop.device.path;
    if (plan.paddedOrigin) {
      const padded = dmCreate(`${name}-base`, plan.paddedOrigin, { readOnly: true });
      dmNames.push(padded.name);
      undo.push(() => dmRemove(padded.name));
      origin = `${padded.major}:${padded.minor}`;
    }
    const snap = dmCreate(name, plan.snapshot(origin));
    dmNames.push(snap.name);
    return {
      strategy: "dm-snapshot",
      devicePath: snap.devicePath,
      baseImage: base.path,
      vmFile: cow.path,
      loops: attachments.map((a) => ({ path: a.device.path, backingFile: a.device.backingFile })),
      dmNames,
      sizeBytes: plan.sectors * 512,
    };
  } catch (err) {
    const problems: unknown[] = [];
    for (const a of attachments.reverse()) a.close(); // autoclear: detach unless dm holds them
    for (const step of undo.reverse()) {
      try {
        step();
      } catch (e) {
        problems.push(e);
      }
    }
    const extra = problems.length
      ? ` (cleanup also failed: ${problems.map(because).join("; ")})`
      : "";
    throw new RootDiskError(`Cannot create dm snapshot "${name}": ${because(err)}${extra}`, {
      code: err instanceof BangerError ? err.code : "internal",
      cause: err,
    });
  } finally {
    // dm now holds both loops; with autoclear they detach when the dm devices go.
    for (const a of attachments) a.close();
  }
}

/**
 * A crash between creating the dm devices and persisting their handle leaves
 * `bg-root-<id>` behind, and every later start would fail with EBUSY: when it sits on
 * exactly this VM's files it is removed; on anything else it is refused.
 */
function removeStaleSnapshot(name: string, files: readonly string[]): void {
  for (const dm of [name, `${name}-base`]) {
    const backing = dmBackingFiles(dm);
    if (backing === undefined) continue;
    const unmark = (f: string) => f.replace(/ \(deleted\)$/, "");
    if (!backing.every((f) => files.includes(unmark(f)))) {
      throw new RootDiskError(
        `Cannot create dm snapshot "${name}": a device "${dm}" exists over ${
          backing.map((f) => `"${f}"`).join(", ")
        }, not over this VM's files`,
        { code: "conflict" },
      );
    }
    dmRemove(dm);
  }
}

/** Refuses a loop whose backing inode is not `file`'s (compared by device and inode). */
function requireBackedBy(loop: string, file: Fd): void {
  const info = loopStatus(loop);
  const st = file.stat();
  if (!info || info.device !== st.dev || info.inode !== st.ino) {
    throw new RootDiskError(
      `Cannot use loop device "${loop}": it is not backed by "${file.path}" (device ${st.dev}, ` +
        `inode ${st.ino}) but by ${
          info ? `device ${info.device}, inode ${info.inode}` : "nothing"
        }`,
      { code: "permission_denied" },
    );
  }
}

/** Options for {@linkcode releaseRootDisk}. */
export interface ReleaseRootDiskOptions {
  /** Also delete the per-VM file (VM delete). @default {false} */
  deleteFiles?: boolean;
}

/**
 * Releases what a root disk holds, in reverse: dm devices, then loops still backed by
 * the recorded files (a loop reused by someone else since is left alone), then, when
 * asked, the per-VM file. Every step runs even when an earlier one fails; running it
 * twice is harmless.
 *
 * @throws {BangerError} listing every step that failed.
 * @example
 * ```ts
 * await releaseRootDisk(handle, { deleteFiles: true });
 * ```
 */
export async function releaseRootDisk(
  handle: RootDiskHandle,
  options: ReleaseRootDiskOptions = {},
): Promise<void> {
  const errors: unknown[] = [];
  const step = async (fn: () => unknown) => {
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  };
  const dmPresent = handle.dmNames.length > 0 && deviceMapperSupport().available;
  for (const name of [...handle.dmNames].reverse()) {
    if (dmPresent) await step(() => dmRemove(name));
  }
  for (const loop of [...handle.loops].reverse()) {
    await step(() => {
      const backing = loopBackingFile(loop.path);
      if (backing === loop.backingFile || backing === `${loop.backingFile} (deleted)`) {
        detachLoop(loop.path);
      }
    });
  }
  if (options.deleteFiles) {
    await step(() =>
      Deno.remove(handle.vmFile).catch((err) => {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      })
    );
  }
  const err = aggregateErrors(`Cannot release root disk "${handle.devicePath}"`, errors);
  if (err) throw err;
}
