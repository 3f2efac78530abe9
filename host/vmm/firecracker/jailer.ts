/**
 * Firecracker's jailer: the command line (a pure renderer), the chroot it runs in, and a
 * detached launch. The jailer (run as root) copies the Firecracker binary into
 * `<base>/<exec name>/<id>/root/`, chroots there, makes `/dev/kvm` and `/dev/net/tun`,
 * drops to `--uid/--gid` and execs Firecracker in place (same pid). Everything
 * Firecracker opens must therefore exist inside the chroot: kernel, initrd and drives are
 * placed at the same absolute paths inside it, so the API calls the owner daemon sends
 * name the same paths as without a jail (reference/firecracker-and-host.md §1.6). The
 * read-write disks are hard-linked, never copied: a copy would take the guest's writes
 * and vanish with the jail at stop.
 *
 * The jail is named as the jailer names it: after the real path of the Firecracker binary
 * (`<base>/<basename of realpath>/<id>/root`, pid file `<root>/<name>.pid`), so a
 * symlinked `/usr/local/bin/firecracker` finds the same directory. Every directory is
 * created with an explicit mode, never through the umask: the system helper runs with
 * `UMask=0077`, and a 0700 root-owned parent would hide the VM's files from Firecracker
 * (which runs as the owner) and the jail's sockets from the owner daemon. The API socket is asked for at `<vmDir>/fc.sock` (chroot-relative); on the host
 * it is `<chroot><vmDir>/fc.sock`, and the owner daemon links its own short
 * `<vmDir>/fc.sock` to it (AF_UNIX paths stop at 108 bytes; reference-tool-inventory.md
 * §10 lesson 8). `--new-pid-ns` is never used (the pid must stay Firecracker's).
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { sparseCopy } from "../../disk/file_copy.ts";
import { BangerError } from "../../errors.ts";
import { vmFiles } from "../../layout.ts";
import {
  cString,
  Errno,
  failure,
  Fd,
  libc,
  LibcError,
  O_RDONLY,
  O_WRONLY,
  RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
  S_IFBLK,
  S_IFMT,
  S_IFREG,
} from "../../os/libc.ts";
import { hostMountOf, type MountInfo } from "../../os/mounts.ts";

const STRICT = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
import { PinnedDir } from "../../os/pinned_dir.ts";
import { readProcFile } from "../../os/procfs.ts";

/** The jailer could not be configured or started. */
export class JailerError extends BangerError {}

/** What {@linkcode renderJailerArgs} renders. */
export interface JailerSpec {
  /** `--id`: 1–64 of A-Z a-z 0-9 and `-`. */
  id: string;
  /** `--exec-file`: the Firecracker binary (absolute; the jailer copies it). */
  execFile: string;
  /** `--uid` Firecracker runs as. */
  uid: number;
  /** `--gid` Firecracker runs as. */
  gid: number;
  /** `--chroot-base-dir`. */
  chrootBaseDir: string;
  /** `--netns`: a network namespace file to join. */
  netns?: string;
  /** `--daemonize`: setsid and stdio to /dev/null. @default {false} */
  daemonize?: boolean;
  /** Firecracker's own flags, after `--`. */
  firecrackerArgs: readonly string[];
}

const JAIL_ID = /^[A-Za-z0-9-]{1,64}$/;
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

/**
 * The jailer's argument vector for `spec`. Pure.
 *
 * @throws {JailerError} `invalid_argument` for a bad id, a relative path, a non-integer
 *   uid/gid or a control character (a newline) in any argument.
 * @example
 * ```ts
 * renderJailerArgs({
 *   id: "vm1", execFile: "/usr/bin/firecracker", uid: 1000, gid: 1000,
 *   chrootBaseDir: "/srv/jailer", firecrackerArgs: ["--api-sock", "/v/fc.sock"],
 * });
 * // ["--id", "vm1", "--exec-file", "/usr/bin/firecracker", "--uid", "1000", "--gid", "1000",
 * //  "--chroot-base-dir", "/srv/jailer", "--", "--api-sock", "/v/fc.sock"]
 * ```
 */
export function renderJailerArgs(spec: JailerSpec): string[] {
  if (!JAIL_ID.test(spec.id)) invalid(`id "${spec.id}" must be 1–64 of A-Z a-z 0-9 and "-"`);
  for (const [name, id] of [["uid", spec.uid], ["gid", spec.gid]] as const) {
    if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) {
      invalid(`${name} ${id} is not a valid id`);
    }
  }
  const paths: [string, string | undefined][] = [
    ["exec file", spec.execFile],
    ["chroot base dir", spec.chrootBaseDir],
    ["netns", spec.netns],
  ];
  for (const [name, p] of paths) {
    if (p !== undefined && (!p.startsWith("/") || CONTROL.test(p))) {
      invalid(`${name} "${p}" must be an absolute path without control characters`);
    }
  }
  for (const arg of spec.firecrackerArgs) {
    if (CONTROL.test(arg)) {
      invalid(`Firecracker argument ${JSON.stringify(arg)} has a control character`);
    }
  }
  return [
    "--id",
    spec.id,
    "--exec-file",
    spec.execFile,
    "--uid",
    String(spec.uid),
    "--gid",
    String(spec.gid),
    "--chroot-base-dir",
    spec.chrootBaseDir,
    ...(spec.netns !== undefined ? ["--netns", spec.netns] : []),
    ...(spec.daemonize ? ["--daemonize"] : []),
    "--",
    ...spec.firecrackerArgs,
  ];
}

function invalid(why: string): never {
  throw new JailerError(`Cannot render the jailer command line: ${why}`, {
    code: "invalid_argument",
  });
}

/** Where one jailed VM lives. */
export interface JailPaths {
  /** `<base>/<exec name>/<id>`. */
  jailDir: string;
  /** `<jailDir>/root`: the chroot. */
  chrootDir: string;
  /** `<jailDir>/serial.log`: the jailer's and Firecracker's output (outside the chroot). */
  serialLog: string;
  /** `<chrootDir>/<exec name>.pid`: the pid file the jailer writes. */
  pidFile: string;
}

/**
 * Where one jailed VM lives, for a Firecracker binary whose real path (symlinks
 * resolved) is `execRealPath`. Pure.
 */
export function jailPaths(chrootBaseDir: string, execRealPath: string, id: string): JailPaths {
  const name = basename(execRealPath);
  const jailDir = `${chrootBaseDir}/${name}/${id}`;
  const chrootDir = `${jailDir}/root`;
  return {
    jailDir,
    chrootDir,
    serialLog: `${jailDir}/${vmFiles.serialLog}`,
    pidFile: `${chrootDir}/${name}.pid`,
  };
}

/** What {@linkcode prepareJailChroot} puts into a chroot. */
export interface JailContents {
  /** The chroot base (`--chroot-base-dir`); it exists. */
  chrootBaseDir: string;
  /** The chroot (`<base>/<name>/<id>/root`). Created 0755 (its parents 0711), root-owned. */
  chrootDir: string;
  /** The VM directory; recreated inside the chroot, owned by uid:gid, mode 0700. */
  vmDir: string;
  /** Read-only files (kernel, initrd): hard-linked, or copied across filesystems. */
  files: readonly string[];
  /** Read-write disk images: hard-linked only (a copy would lose the guest's writes). */
  disks?: readonly string[];
  /** Block devices (`/dev/dm-N`) to recreate with mknod, owned by uid:gid. */
  devices?: readonly string[];
  uid: number;
  gid: number;
}

/**
 * Fills a fresh chroot: `files` are hard-linked (copied through symlink-refusing opens
 * when the chroot is on another filesystem), `disks` hard-linked, `devices` recreated
 * with mknod, empty `vmm.log` and `metrics.json` created, and the VM directory inside it
 * handed to uid:gid for Firecracker's sockets and logs. Every directory gets its mode explicitly, whatever the umask.
 *
 * @throws {JailerError} naming the file that could not be placed; `failed_precondition`
 *   when a disk is on another filesystem than the chroot (naming both).
 */
export async function prepareJailChroot(c: JailContents): Promise<void> {
  await makeDirs(c.chrootBaseDir, dirname(c.chrootDir), 0o711);
  await makeDirs(dirname(c.chrootDir), c.chrootDir, 0o755);
  const vmDirInside = `${c.chrootDir}${c.vmDir}`;
  await makeDirs(c.chrootDir, vmDirInside, 0o755);
  const place = async (file: string, canCopy: boolean) => {
    const target = `${c.chrootDir}${file}`;
    await makeDirs(c.chrootDir, dirname(target), 0o755);
    try {
      await placeFile(file, target, canCopy, c.uid);
    } catch (err) {
      if (err instanceof JailerError) throw err;
      throw new JailerError(`Cannot place "${file}" in the jail "${c.chrootDir}": ${String(err)}`, {
        code: err instanceof BangerError ? err.code : "internal",
        cause: err,
      });
    }
  };
  for (const file of c.files) await place(file, true);
  for (const disk of c.disks ?? []) await place(disk, false);
  for (const device of c.devices ?? []) await makeDeviceNode(c.chrootDir, device, c.uid, c.gid);
  {
    // Firecracker < 1.14 opens its log and metrics without O_CREAT: they must exist. Made
    // while the directory is still root's, so nothing the owner placed is followed.
    using dir = PinnedDir.open(vmDirInside);
    for (const name of [vmFiles.vmmLog, vmFiles.metrics]) {
      using file = dir.createFile(name, O_WRONLY, 0o600);
      file.chown(c.uid, c.gid);
    }
  }
  await Deno.chown(vmDirInside, c.uid, c.gid);
  await Deno.chmod(vmDirInside, 0o700);
}

/**
 * Creates `dir` and its missing parents below `base` (which exists), each with `mode`
 * set by chmod, so the umask never decides it.
 */
async function makeDirs(base: string, dir: string, mode: number): Promise<void> {
  if (dir === base || !dir.startsWith(`${base}/`)) return;
  await makeDirs(base, dirname(dir), mode);
  try {
    await Deno.mkdir(dir, { mode });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return;
    throw err;
  }
  await Deno.chmod(dir, mode);
}

/**
 * Opens `source` refusing a symlink on any component, checks that it is a regular file of
 * `uid` (so no root-owned file, such as an old setuid binary, can be made to appear in an
 * owner-traversable jail), then links that very inode into the jail. Across filesystems
 * only a read-only file may be copied, from the same descriptor.
 */
async function placeFile(
  source: string,
  target: string,
  canCopy: boolean,
  uid: number,
): Promise<void> {
  using from = Fd.openAt(undefined, source, O_RDONLY, STRICT, "open");
  const st = from.stat();
  if ((st.mode & S_IFMT) !== S_IFREG || st.uid !== uid) {
    throw new JailerError(
      `Cannot put "${source}" in the jail: only regular files owned by uid ${uid} are placed ` +
        `there, and it is ${
          (st.mode & S_IFMT) !== S_IFREG ? "not a regular file" : `owned by uid ${st.uid}`
        }`,
      { code: "permission_denied" },
    );
  }
  try {
    from.linkTo(target, "link into the jail");
    return;
  } catch (err) {
    if (!(err instanceof LibcError) || err.errno !== Errno.EXDEV) throw err;
  }
  if (!canCopy) {
    const [on, to] = await Promise.all([hostMountOf(source), hostMountOf(dirname(target))]);
    const where = (m: MountInfo | undefined) => m ? `${m.source} on ${m.mountPoint}` : "unknown";
    throw new JailerError(
      `Cannot put disk "${source}" in the jail: it is on ${where(on)} and the jail on ${
        where(to)
      }; a disk can only be hard-linked into a jail, and a copy would lose the guest's writes`,
      {
        code: "failed_precondition",
        hint: "keep the jailer's chroot base and banger's state directory on one filesystem",
      },
    );
  }
  using dir = PinnedDir.open(dirname(target));
  using to = dir.createFile(basename(target), O_WRONLY, 0o644);
  await sparseCopy(from, to);
  to.chown(st.uid, st.gid);
}

async function makeDeviceNode(
  chroot: string,
  device: string,
  uid: number,
  gid: number,
): Promise<void> {
  const name = basename(device);
  const dev = readProcFile(`/sys/class/block/${name}/dev`).trim();
  const m = /^(\d+):(\d+)$/.exec(dev);
  if (!m) {
    throw new JailerError(
      `Cannot recreate "${device}" in the jail: its number "${dev}" is unreadable`,
    );
  }
  await makeDirs(chroot, `${chroot}/dev`, 0o755);
  const node = `${chroot}/dev/${name}`;
  // SAFETY: the NUL-terminated path is a temporary alive for the synchronous call.
  if (libc().mknod(cString(node), S_IFBLK | 0o600, makeDev(Number(m[1]), Number(m[2]))) < 0) {
    throw failure("create device node", node);
  }
  await Deno.chown(node, uid, gid);
}

/** glibc's `makedev(major, minor)` (`<sys/sysmacros.h>`). Pure. */
export function makeDev(major: number, minor: number): bigint {
  const maj = BigInt(major);
  const min = BigInt(minor);
  return ((maj & 0xfffff000n) << 32n) | ((maj & 0xfffn) << 8n) | ((min & 0xffffff00n) << 12n) |
    (min & 0xffn);
}

// Runs the jailer with umask 077 and its (and Firecracker's) stdout+stderr appended to
// the console log; `exec` keeps the pid, and the jailer execs Firecracker in place.
const LAUNCH_SCRIPT = 'umask 077; log=$1; shift; exec "$@" >>"$log" 2>&1';

/**
 * Starts `jailerBin` detached (own session, so neither the helper's nor the daemon's
 * restart reaches it), its output appended to `serialLog` (in the jail directory, which
 * exists), which is created first and handed to uid:gid so the owner daemon can read the
 * console.
 *
 * @returns the pid (the jailer's, which becomes Firecracker's).
 */
export function spawnJailer(
  jailerBin: string,
  args: readonly string[],
  serialLog: string,
  owner: { uid: number; gid: number },
): number {
  {
    using dir = PinnedDir.open(dirname(serialLog));
    dir.remove(basename(serialLog));
    using log = dir.createFile(basename(serialLog), O_WRONLY, 0o600);
    log.chown(owner.uid, owner.gid);
  }
  const child = new Deno.Command("sh", {
    args: ["-c", LAUNCH_SCRIPT, "banger-jailer", serialLog, jailerBin, ...args],
    detached: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  child.status.catch(() => {});
  return child.pid;
}
