/**
 * {@linkcode PinnedDir}: a directory held open by descriptor, so a privileged process can
 * create, rename and remove entries in a directory another user controls without being
 * redirected by a symlink swapped in after a check. The directory itself is opened with
 * openat2(2) `RESOLVE_NO_SYMLINKS` (no symlink on any component, atomically); entries are
 * reached with the `*at` calls relative to that descriptor, never by path.
 *
 * @module
 */

import {
  cString,
  Errno,
  failure,
  Fd,
  libc,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_RDONLY,
  RESOLVE_BENEATH,
  RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
} from "./libc.ts";

/** No symlinks and no magic links anywhere on the path. */
const STRICT = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
// <fcntl.h>
const AT_REMOVEDIR = 0x200;

/**
 * A directory pinned by descriptor; `using` closes it.
 *
 * @example
 * ```ts
 * using dir = PinnedDir.open("/var/lib/banger/vms/abc");
 * using disk = dir.openFile("root.ext4.tmp", O_WRONLY | O_CREAT | O_EXCL);
 * disk.chown(1000, 1000);
 * dir.rename("root.ext4.tmp", "root.ext4");
 * ```
 */
export class PinnedDir implements Disposable {
  readonly #fd: Fd;

  private constructor(fd: Fd) {
    this.#fd = fd;
  }

  /**
   * Opens `path` (absolute) as a directory, refusing a symlink on any component.
   *
   * @throws {LibcError} ELOOP for a symlink, ENOTDIR for a non-directory, ENOENT.
   */
  static open(path: string): PinnedDir {
    return new PinnedDir(
      Fd.openAt(undefined, path, O_RDONLY | O_DIRECTORY, STRICT, "open directory"),
    );
  }

  /** The path it was opened from (for messages only; never used to reach it again). */
  get path(): string {
    return this.#fd.path;
  }

  /** The directory's descriptor. */
  get fd(): Fd {
    return this.#fd;
  }

  /**
   * Opens the entry `name` (one component) with `flags`; a symlink is refused (ELOOP).
   *
   * @throws {LibcError}
   */
  openFile(name: string, flags: number, mode = 0o600): Fd {
    checkName(name);
    return Fd.openAt(this.#fd, name, flags, STRICT | RESOLVE_BENEATH, "open", mode);
  }

  /** Opens the sub-directory `name`, refusing a symlink. @throws {LibcError} */
  openDir(name: string): PinnedDir {
    checkName(name);
    return new PinnedDir(
      Fd.openAt(this.#fd, name, O_RDONLY | O_DIRECTORY, STRICT | RESOLVE_BENEATH, "open directory"),
    );
  }

  /** Creates a new file `name` (fails when anything exists there). @throws {LibcError} */
  createFile(name: string, flags: number, mode = 0o600): Fd {
    return this.openFile(name, flags | O_CREAT | O_EXCL, mode);
  }

  /** mkdirat(2); `false` when it already exists. @throws {LibcError} for other failures */
  mkdir(name: string, mode = 0o700): boolean {
    checkName(name);
    // SAFETY: the NUL-terminated name is a temporary alive for the synchronous call.
    if (libc().mkdirat(this.#fd.fd, cString(name), mode) === 0) return true;
    const err = failure("create directory", `${this.path}/${name}`);
    if (err.errno === Errno.EEXIST) return false;
    throw err;
  }

  /** renameat(2) inside this directory; replaces `to` (a symlink there is replaced, not followed). */
  rename(from: string, to: string): void {
    checkName(from);
    checkName(to);
    // SAFETY: both names are temporaries alive for the synchronous call.
    const rc = libc().renameat(this.#fd.fd, cString(from), this.#fd.fd, cString(to));
    if (rc < 0) throw failure(`rename "${from}" to "${to}" in`, this.path);
  }

  /** unlinkat(2) of a file or empty directory; `false` when it did not exist. */
  remove(name: string, options: { dir?: boolean } = {}): boolean {
    checkName(name);
    const flags = options.dir ? AT_REMOVEDIR : 0;
    // SAFETY: the name is a temporary alive for the synchronous call.
    if (libc().unlinkat(this.#fd.fd, cString(name), flags) === 0) return true;
    const err = failure("remove", `${this.path}/${name}`);
    if (err.errno === Errno.ENOENT) return false;
    throw err;
  }

  /** symlinkat(2): a new symlink `name` → `target` (fails when `name` exists). */
  symlink(target: string, name: string): void {
    checkName(name);
    // SAFETY: both strings are temporaries alive for the synchronous call.
    if (libc().symlinkat(cString(target), this.#fd.fd, cString(name)) < 0) {
      throw failure(`link to "${target}" as`, `${this.path}/${name}`);
    }
  }

  /** Closes the descriptor. */
  close(): void {
    this.#fd.close();
  }

  /** Closes the descriptor. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function checkName(name: string): void {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new RangeError(
      `Cannot use "${name}" as a directory entry: it must be one path component`,
    );
  }
}
