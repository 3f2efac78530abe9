/**
 * Root disks made by a root helper for an unprivileged owner. The VM directory belongs to
 * the owner, who could swap a component for a symlink between the helper's path check
 * and its use; so every file here is reached through descriptors opened with openat2
 * `RESOLVE_NO_SYMLINKS` ({@linkcode PinnedDir}), and the result is handed to the owner
 * with fchown. Every file used must be a regular file of the owner with one link (a hard
 * link the owner made to a root-only file comes back refused, not readable), and a dm
 * snapshot's loops are configured from those very descriptors.
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { FICLONE, sparseCopy } from "./file_copy.ts";
import { BangerError } from "../errors.ts";
import { deviceMapperSupport } from "./dm.ts";
import { vmFiles } from "../layout.ts";
import {
  because,
  Errno,
  Fd,
  LibcError,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
  S_IFMT,
  S_IFREG,
} from "../os/libc.ts";
import { PinnedDir } from "../os/pinned_dir.ts";
import {
  type CreateRootDiskOptions,
  releaseRootDisk,
  type RootDiskHandle,
  snapshotOver,
  type StrategyReport,
} from "./rootdisk.ts";

/** The uid and gid files are handed to. */
export interface FileOwner {
  uid: number;
  gid: number;
}

/** A root disk could not be made or released for the owner. */
export class OwnedRootDiskError extends BangerError {}

const STRICT = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
/** FICLONE errors meaning "this filesystem (pair) cannot share extents". */
const NO_REFLINK: readonly number[] = [Errno.EOPNOTSUPP, Errno.EXDEV, Errno.EINVAL, Errno.ENOTTY];

/**
 * Makes the VM's root disk owned by `owner`: a reflink or sparse copy `root.ext4` written
 * through pinned descriptors, or (with device-mapper) a dm snapshot whose COW file and
 * device node are handed to the owner.
 *
 * @throws {OwnedRootDiskError} `permission_denied` when a symlink is met on the way.
 * @example
 * ```ts
 * const disk = await createOwnedRootDisk({ id, baseImage, vmDir, cowBytes }, { uid: 1000, gid: 1000 });
 * ```
 */
export async function createOwnedRootDisk(
  options: CreateRootDiskOptions,
  owner: FileOwner,
): Promise<RootDiskHandle> {
  try {
    ensureOwnedDir(options.vmDir, owner);
    const dm = options.strategy ?? (deviceMapperSupport().available ? "dm-snapshot" : undefined);
    if (dm === "dm-snapshot") return ownedSnapshot(options, owner);
    return await ownedCopy(options, owner);
  } catch (err) {
    throw wrap(`Cannot create the root disk of VM "${options.id}"`, err);
  }
}

/**
 * Releases a root disk; the per-VM file is removed through a pinned directory.
 *
 * @throws {BangerError} listing every step that failed.
 */
export async function releaseOwnedRootDisk(
  handle: RootDiskHandle,
  options: { deleteFiles?: boolean } = {},
): Promise<void> {
  await releaseRootDisk(handle, { deleteFiles: false });
  if (!options.deleteFiles) return;
  try {
    using dir = PinnedDir.open(dirname(handle.vmFile));
    dir.remove(basename(handle.vmFile));
  } catch (err) {
    if (err instanceof LibcError && err.errno === Errno.ENOENT) return;
    throw wrap(`Cannot remove "${handle.vmFile}"`, err);
  }
}

/**
 * Which strategy a root disk under `dir` would use, probing reflinks inside the pinned
 * directory.
 *
 * @throws {OwnedRootDiskError} when `dir` cannot be opened without following a symlink.
 */
export function ownedRootDiskStrategy(dir: string): StrategyReport {
  const dm = deviceMapperSupport();
  if (dm.available) {
    return { strategy: "dm-snapshot", reason: `device-mapper ${dm.version} is available` };
  }
  try {
    using pinned = PinnedDir.open(dir);
    const probe = probeReflinkIn(pinned);
    return probe === undefined
      ? { strategy: "reflink", reason: `${dm.reason}; "${dir}" supports reflinks` }
      : { strategy: "sparse-copy", reason: `${dm.reason}; no reflinks in "${dir}": ${probe}` };
  } catch (err) {
    throw wrap(`Cannot probe "${dir}"`, err);
  }
}

function probeReflinkIn(dir: PinnedDir): string | undefined {
  const stem = `.banger-reflink-probe-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    {
      using src = dir.createFile(`${stem}.src`, O_WRONLY);
      src.pwriteAll(new Uint8Array(4096).fill(1), 0);
    }
    using src = dir.openFile(`${stem}.src`, O_RDONLY);
    using dst = dir.createFile(`${stem}.dst`, O_WRONLY);
    dst.ioctlInt(FICLONE, src.fd, "clone into");
    return undefined;
  } catch (err) {
    return err instanceof LibcError ? err.reason : because(err);
  } finally {
    for (const s of ["src", "dst"]) {
      try {
        dir.remove(`${stem}.${s}`);
      } catch {
        // best effort
      }
    }
  }
}

/** Creates `vmDir` (0700, owner's) when missing; refuses a symlink anywhere on the way. */
function ensureOwnedDir(vmDir: string, owner: FileOwner): void {
  using parent = PinnedDir.open(dirname(vmDir));
  if (parent.mkdir(basename(vmDir), 0o700)) {
    using created = parent.openDir(basename(vmDir));
    created.fd.chown(owner.uid, owner.gid);
  }
}

async function ownedCopy(o: CreateRootDiskOptions, owner: FileOwner): Promise<RootDiskHandle> {
  const vmFile = `${o.vmDir}/${vmFiles.rootCopy}`;
  using dir = PinnedDir.open(o.vmDir);
  const base = { baseImage: o.baseImage, vmFile, devicePath: vmFile, loops: [], dmNames: [] };
  const reused = openIfPresent(dir, vmFiles.rootCopy);
  if (reused) {
    using file = reused;
    const st = requireOwned(file, owner);
    const used = o.strategy ?? (probeReflinkIn(dir) === undefined ? "reflink" : "sparse-copy");
    if (st.size < o.cowBytes) {
      using writable = dir.openFile(vmFiles.rootCopy, O_WRONLY);
      requireSameFile(writable, file);
      writable.truncate(o.cowBytes, "grow root disk");
    }
    return { ...base, strategy: used, sizeBytes: Math.max(st.size, o.cowBytes) };
  }
  using from = Fd.openAt(undefined, o.baseImage, O_RDONLY, STRICT, "open base image");
  const st = requireOwned(from, owner);
  const tmp = `${vmFiles.rootCopy}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  let used: "reflink" | "sparse-copy" = "sparse-copy";
  try {
    {
      using to = dir.createFile(tmp, O_WRONLY, 0o600);
      if (o.strategy !== "sparse-copy" && clone(from, to, o.strategy === "reflink")) {
        used = "reflink";
      } else {
        await sparseCopy(from, to);
      }
      if (st.size < o.cowBytes) to.truncate(o.cowBytes, "grow root disk");
      to.fsync("flush copy");
      to.chown(owner.uid, owner.gid);
    }
    dir.rename(tmp, vmFiles.rootCopy);
  } catch (err) {
    try {
      dir.remove(tmp);
    } catch {
      // the temp file may never have been created
    }
    throw err;
  }
  return { ...base, strategy: used, sizeBytes: Math.max(st.size, o.cowBytes) };
}

function clone(from: Fd, to: Fd, required: boolean): boolean {
  try {
    to.ioctlInt(FICLONE, from.fd, "reflink into");
    return true;
  } catch (err) {
    if (err instanceof LibcError && NO_REFLINK.includes(err.errno) && !required) return false;
    throw err;
  }
}

function ownedSnapshot(o: CreateRootDiskOptions, owner: FileOwner): RootDiskHandle {
  using dir = PinnedDir.open(o.vmDir);
  using base = Fd.openAt(undefined, o.baseImage, O_RDONLY, STRICT, "open base image");
  requireOwned(base, owner);
  let cow = openIfPresent(dir, vmFiles.rootCow, O_RDWR);
  const made = cow === undefined;
  if (!cow) {
    cow = dir.createFile(vmFiles.rootCow, O_RDWR, 0o600);
    cow.truncate(o.cowBytes, "size COW file");
    cow.chown(owner.uid, owner.gid);
  }
  try {
    const st = requireOwned(cow, owner);
    if (st.size < o.cowBytes) cow.truncate(o.cowBytes, "grow COW file");
    const handle = snapshotOver(o.id, base, cow);
    using device = Fd.open(handle.devicePath, O_RDONLY, "open root disk device");
    device.chown(owner.uid, owner.gid);
    return handle;
  } catch (err) {
    if (made) dir.remove(vmFiles.rootCow);
    throw err;
  } finally {
    cow.close();
  }
}

function openIfPresent(dir: PinnedDir, name: string, flags = O_RDONLY): Fd | undefined {
  try {
    return dir.openFile(name, flags);
  } catch (err) {
    if (err instanceof LibcError && err.errno === Errno.ENOENT) return undefined;
    throw err;
  }
}

/** Refuses `b` unless it is the very inode `a` is (a second open of the same name). */
function requireSameFile(b: Fd, a: Fd): void {
  const [x, y] = [a.stat(), b.stat()];
  if (x.dev !== y.dev || x.ino !== y.ino) {
    throw new OwnedRootDiskError(`Cannot grow "${b.path}": it was replaced while in use`, {
      code: "permission_denied",
    });
  }
}

/** Refuses anything but a regular file of `owner` with exactly one link. */
function requireOwned(fd: Fd, owner: FileOwner): { size: number } {
  const st = fd.stat();
  const problem = (st.mode & S_IFMT) !== S_IFREG
    ? "it is not a regular file"
    : st.uid !== owner.uid
    ? `it belongs to uid ${st.uid}, not to the owner (uid ${owner.uid})`
    : st.nlink !== 1
    ? `it has ${st.nlink} hard links (a root disk's files have one)`
    : undefined;
  if (problem) {
    throw new OwnedRootDiskError(`Cannot use "${fd.path}" for a root disk: ${problem}`, {
      code: "permission_denied",
    });
  }
  return st;
}

function wrap(what: string, err: unknown): BangerError {
  if (err instanceof OwnedRootDiskError) return err;
  const symlink = err instanceof LibcError &&
    (err.errno === Errno.ELOOP || err.errno === Errno.EXDEV);
  return new OwnedRootDiskError(`${what}: ${because(err)}`, {
    code: symlink ? "permission_denied" : err instanceof BangerError ? err.code : "internal",
    hint: symlink ? "banger's directories must not contain symlinks" : undefined,
    cause: err,
  });
}
