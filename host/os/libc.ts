/**
 * Checked C library calls: each wrapper calls libc through `host/os/_libc.ts`, reads
 * `errno` right after a failure and throws a {@linkcode LibcError} naming what could not
 * be done, the file or device, and `strerror`.
 *
 * Deno's own file APIs refuse `/dev`, `/proc` and `/sys` without `--allow-all`; these
 * calls need only `--allow-ffi` (reference/host-primitives-lab.md §7).
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import { type LibcSymbols, loadLibc } from "./_libc.ts";
import { BangerError, type ErrorCode } from "../errors.ts";

// <asm-generic/fcntl.h> (x86_64 values)
/** Open for reading only. */
export const O_RDONLY = 0x0;
/** Open for writing only. */
export const O_WRONLY = 0x1;
/** Open for reading and writing. */
export const O_RDWR = 0x2;
/** Create the file if missing. */
export const O_CREAT = 0x40;
/** With `O_CREAT`: fail with EEXIST when the file exists. */
export const O_EXCL = 0x80;
/** Fail with ELOOP when the last path component is a symlink. */
export const O_NOFOLLOW = 0x20000;
/** Close the descriptor in child processes. */
export const O_CLOEXEC = 0x80000;

/** With `O_CREAT`-less opens: a directory is required (ENOTDIR otherwise). */
export const O_DIRECTORY = 0x10000;
/** A descriptor that names a file without opening it for I/O. */
export const O_PATH = 0x200000;
/** `dirfd` meaning "relative to the current directory" for the `*at` calls. */
export const AT_FDCWD = -100;
/** `linkat` flag: link the inode of the descriptor itself (the path is ""). */
export const AT_EMPTY_PATH = 0x1000;

// <linux/openat2.h>
/** openat2: refuse every symlink on the way, the last component included (ELOOP). */
export const RESOLVE_NO_SYMLINKS = 0x04;
/** openat2: refuse `/proc/<pid>/fd`-style magic links (ELOOP). */
export const RESOLVE_NO_MAGICLINKS = 0x02;
/** openat2: refuse paths that escape `dirfd` (EXDEV). */
export const RESOLVE_BENEATH = 0x08;
/** sizeof(struct open_how): flags u64 @0, mode u64 @8, resolve u64 @16. */
export const OPEN_HOW_SIZE = 24;
/** `__NR_openat2` on x86_64 (`<asm/unistd_64.h>`). */
export const SYS_OPENAT2 = 437;

/** Encodes a `struct open_how` for openat2(2). Pure. */
export function encodeOpenHow(flags: number, mode: number, resolve: number): Uint8Array {
  const buf = new Uint8Array(OPEN_HOW_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setBigUint64(0, BigInt(flags), true);
  dv.setBigUint64(8, BigInt(mode), true);
  dv.setBigUint64(16, BigInt(resolve), true);
  return buf;
}

/** sizeof(struct stat) on x86_64 (`<asm/stat.h>`, checked with gcc). */
export const STAT_SIZE = 144;
/** File type bits of `st_mode` (`<sys/stat.h>`). */
export const S_IFMT = 0o170000;
/** Regular file. */
export const S_IFREG = 0o100000;
/** Directory. */
export const S_IFDIR = 0o040000;
/** Block device. */
export const S_IFBLK = 0o060000;
/** Character device. */
export const S_IFCHR = 0o020000;

/** The fields of `struct stat` banger reads. */
export interface FileStat {
  /** Device of the inode. */
  dev: bigint;
  /** Inode number. */
  ino: bigint;
  /** Hard links to the inode. */
  nlink: number;
  /** Type and permission bits. */
  mode: number;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** Device number for block/character devices. */
  rdev: bigint;
  /** Size in bytes. */
  size: number;
}

/** Decodes the x86_64 `struct stat` (dev @0, ino @8, nlink @16, mode @24, uid @28, gid @32, rdev @40, size @48). Pure. */
export function decodeStat(buf: Uint8Array): FileStat {
  if (buf.length < STAT_SIZE) {
    throw new RangeError(`Cannot decode stat: need ${STAT_SIZE} bytes, got ${buf.length}`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    dev: dv.getBigUint64(0, true),
    ino: dv.getBigUint64(8, true),
    nlink: Number(dv.getBigUint64(16, true)),
    mode: dv.getUint32(24, true),
    uid: dv.getUint32(28, true),
    gid: dv.getUint32(32, true),
    rdev: dv.getBigUint64(40, true),
    size: Number(dv.getBigInt64(48, true)),
  };
}

// <linux/fs.h> / <unistd.h>
/** `lseek` from the start of the file. */
export const SEEK_SET = 0;
/** `lseek` from the end of the file. */
export const SEEK_END = 2;
/** `lseek` to the next byte that holds data at or after the offset. */
export const SEEK_DATA = 3;
/** `lseek` to the next hole at or after the offset. */
export const SEEK_HOLE = 4;

// <unistd.h>
const F_OK = 0;

// <asm-generic/errno-base.h>, <asm-generic/errno.h>: value -> [name, banger error code]
const ERRNOS: Record<number, [string, ErrorCode]> = {
  1: ["EPERM", "permission_denied"],
  2: ["ENOENT", "not_found"],
  3: ["ESRCH", "not_found"],
  4: ["EINTR", "unavailable"],
  5: ["EIO", "internal"],
  6: ["ENXIO", "not_found"],
  9: ["EBADF", "internal"],
  11: ["EAGAIN", "unavailable"],
  12: ["ENOMEM", "internal"],
  13: ["EACCES", "permission_denied"],
  16: ["EBUSY", "conflict"],
  17: ["EEXIST", "conflict"],
  18: ["EXDEV", "failed_precondition"],
  19: ["ENODEV", "not_found"],
  20: ["ENOTDIR", "invalid_argument"],
  21: ["EISDIR", "invalid_argument"],
  22: ["EINVAL", "invalid_argument"],
  25: ["ENOTTY", "failed_precondition"],
  27: ["EFBIG", "too_large"],
  28: ["ENOSPC", "too_large"],
  30: ["EROFS", "failed_precondition"],
  36: ["ENAMETOOLONG", "invalid_argument"],
  38: ["ENOSYS", "failed_precondition"],
  40: ["ELOOP", "invalid_argument"],
  95: ["EOPNOTSUPP", "failed_precondition"],
};

/** errno values the host layer branches on. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  ENXIO: 6,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSYS: 38,
  ENOTDIR: 20,
  ELOOP: 40,
  EOPNOTSUPP: 95,
} as const;

/** The symbolic name of an errno value, e.g. `EBUSY`; `errno N` when unknown. */
export function errnoName(errno: number): string {
  return ERRNOS[errno]?.[0] ?? `errno ${errno}`;
}

/** A libc call failed; `errno` says why. */
export class LibcError extends BangerError {
  /** The errno value read right after the failing call. */
  readonly errno: number;
  /** What was being done, e.g. `configure loop device`. */
  readonly operation: string;
  /** The file or device it was done to. */
  readonly target: string;
  /** `strerror` and the errno name, e.g. `Device or resource busy (EBUSY)`. */
  readonly reason: string;

  /** Builds the message from the operation, target, errno name and `description`. */
  constructor(operation: string, target: string, errno: number, description: string) {
    super(`Cannot ${operation} "${target}": ${description} (${errnoName(errno)})`, {
      code: ERRNOS[errno]?.[1] ?? "internal",
    });
    this.errno = errno;
    this.operation = operation;
    this.target = target;
    this.reason = `${description} (${errnoName(errno)})`;
  }
}

/**
 * The bound libc symbols.
 *
 * @throws {BangerError} when libc cannot be loaded (usually: `--allow-ffi` is missing).
 */
export function libc(): LibcSymbols {
  try {
    return loadLibc();
  } catch (err) {
    throw new BangerError(`Cannot load the C library: ${String(err)}`, {
      code: "failed_precondition",
      hint: "run banger with --allow-ffi",
      cause: err,
    });
  }
}

/** Reads the calling thread's errno. Call it immediately after the failing call. */
export function lastErrno(): number {
  const ptr = libc().__errno_location();
  if (ptr === null) return 0;
  return new Deno.UnsafePointerView(ptr).getInt32(0);
}

/** Sets errno to 0, for calls (like readdir) whose failure is only visible in errno. */
export function clearErrno(): void {
  const ptr = libc().__errno_location();
  if (ptr === null) return;
  // SAFETY: __errno_location returns the thread's errno slot, 4 bytes, valid for the
  // thread's lifetime; the view is dropped before this function returns.
  new Int32Array(Deno.UnsafePointerView.getArrayBuffer(ptr, 4))[0] = 0;
}

/** `strerror(errno)` as a string. */
export function describeErrno(errno: number): string {
  const ptr = libc().strerror(errno);
  return ptr === null ? `error ${errno}` : Deno.UnsafePointerView.getCString(ptr);
}

/**
 * The part of a lower-level error worth appending after a module's own "Cannot …: ",
 * with its first letter lowered: `cannot open "/dev/loop3": No such file (ENOENT)`.
 */
export function because(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** Builds the {@linkcode LibcError} for the errno just set. */
export function failure(operation: string, target: string, errno = lastErrno()): LibcError {
  return new LibcError(operation, target, errno, describeErrno(errno));
}

/** `text` as UTF-8 with a terminating NUL, for `const char *` parameters. */
export function cString(text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  if (bytes.includes(0)) throw new RangeError(`Cannot pass "${text}" to C: it contains a NUL`);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Decodes a NUL-terminated string stored in `buf[offset, offset + size)`. */
export function decodeCString(buf: Uint8Array, offset: number, size: number): string {
  const field = buf.subarray(offset, offset + size);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end === -1 ? field : field.subarray(0, end));
}

/**
 * An open file descriptor; `using` closes it.
 *
 * @example
 * ```ts
 * using fd = Fd.open("/dev/loop0", O_RDONLY | O_CLOEXEC, "open loop device");
 * const superblock = fd.pread(new Uint8Array(1024), 1024);
 * ```
 */
export class Fd implements Disposable {
  #fd: number;
  /** The path it was opened from, named in errors. */
  readonly path: string;

  private constructor(fd: number, path: string) {
    this.#fd = fd;
    this.path = path;
  }

  /**
   * open(2). `O_CLOEXEC` is always added.
   *
   * @throws {LibcError} naming `operation` and `path`.
   */
  static open(path: string, flags: number, operation = "open", mode = 0o600): Fd {
    const name = cString(path);
    for (;;) {
      // SAFETY: `name` is a local NUL-terminated buffer kept alive by this frame for the
      // whole synchronous call; open(2) does not retain the pointer.
      const fd = libc().open(name, flags | O_CLOEXEC, mode);
      if (fd >= 0) return new Fd(fd, path);
      const errno = lastErrno();
      if (errno !== Errno.EINTR) throw failure(operation, path, errno);
    }
  }

  /**
   * openat2(2) of `path` relative to `dir` (or the current directory), with `resolve`
   * rules such as {@linkcode RESOLVE_NO_SYMLINKS}: the kernel walks the path and refuses a
   * symlink on any component with ELOOP, atomically, so nothing can be swapped in between
   * a check and the open. `O_CLOEXEC` is always added.
   *
   * @throws {LibcError} naming `operation` and `path` (ELOOP for a symlink).
   */
  static openAt(
    dir: Fd | undefined,
    path: string,
    flags: number,
    resolve: number,
    operation = "open",
    mode = 0o600,
  ): Fd {
    const name = cString(path);
    const how = encodeOpenHow(flags | O_CLOEXEC, (flags & O_CREAT) !== 0 ? mode : 0, resolve);
    const shown = dir ? `${dir.path}/${path}` : path;
    for (;;) {
      // SAFETY: `name` and `how` are locals alive for the synchronous call; the kernel
      // copies both during the call only.
      const fd = Number(
        libc().syscall_openat2(
          BigInt(SYS_OPENAT2),
          dir ? dir.fd : AT_FDCWD,
          name,
          how,
          BigInt(OPEN_HOW_SIZE),
        ),
      );
      if (fd >= 0) return new Fd(fd, shown);
      const errno = lastErrno();
      if (errno !== Errno.EINTR) throw failure(operation, shown, errno);
    }
  }

  /** fstat(2). @throws {LibcError} */
  stat(operation = "inspect"): FileStat {
    const buf = new Uint8Array(STAT_SIZE);
    // SAFETY: `buf` is a local of STAT_SIZE bytes alive for the synchronous call.
    if (libc().fstat(this.fd, buf) < 0) throw failure(operation, this.path);
    return decodeStat(buf);
  }

  /** fchown(2): changes the owner of the open file itself (never a symlink's target). */
  chown(uid: number, gid: number, operation = "change the owner of"): void {
    if (libc().fchown(this.fd, uid, gid) < 0) throw failure(operation, this.path);
  }

  /** The raw descriptor number; throws once closed. */
  get fd(): number {
    if (this.#fd < 0) throw new RangeError(`Cannot use "${this.path}": it is closed`);
    return this.#fd;
  }

  /** Closes the descriptor; calling it twice is harmless. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    libc().close(fd);
  }

  /** Closes the descriptor. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * ioctl(2) whose argument is a pointer to `buf`; returns ioctl's result.
   *
   * @throws {LibcError} naming `operation`.
   */
  ioctlPtr(request: number, buf: Uint8Array, operation: string): number {
    // SAFETY: `buf` is owned by the caller and referenced by this frame until the
    // synchronous ioctl returns; the kernel copies in/out during the call only.
    const rc = libc().ioctl_ptr(this.fd, BigInt(request), buf);
    if (rc < 0) throw failure(operation, this.path);
    return rc;
  }

  /**
   * ioctl(2) whose argument is an integer (no pointer crosses); returns its result.
   *
   * @throws {LibcError} naming `operation`.
   */
  ioctlInt(request: number, arg: number | bigint, operation: string): number {
    const rc = libc().ioctl_int(this.fd, BigInt(request), BigInt(arg));
    if (rc < 0) throw failure(operation, this.path);
    return rc;
  }

  /** pread(2) into `buf`, retrying EINTR; returns the bytes read (0 at end of file). */
  pread(buf: Uint8Array, offset: number, operation = "read"): number {
    for (;;) {
      // SAFETY: `buf` outlives the synchronous call; pread writes at most buf.length bytes.
      const n = Number(libc().pread(this.fd, buf, BigInt(buf.length), BigInt(offset)));
      if (n >= 0) return n;
      const errno = lastErrno();
      if (errno !== Errno.EINTR) throw failure(operation, this.path, errno);
    }
  }

  /** pwrite(2) all of `buf` at `offset`, looping over short writes. */
  pwriteAll(buf: Uint8Array, offset: number, operation = "write"): void {
    let done = 0;
    while (done < buf.length) {
      const chunk = buf.subarray(done);
      // SAFETY: `chunk` views caller-owned memory alive for the synchronous call.
      const n = Number(libc().pwrite(this.fd, chunk, BigInt(chunk.length), BigInt(offset + done)));
      if (n < 0) {
        const errno = lastErrno();
        if (errno === Errno.EINTR) continue;
        throw failure(operation, this.path, errno);
      }
      done += n;
    }
  }

  /** read(2) from the current position until end of file, up to `maxBytes`. */
  readAll(maxBytes: number, operation = "read"): Uint8Array {
    const chunks: Uint8Array[] = [];
    let total = 0;
    while (total < maxBytes) {
      const buf = new Uint8Array(Math.min(65536, maxBytes - total));
      // SAFETY: `buf` is a fresh local buffer alive for the synchronous call.
      const n = Number(libc().read(this.fd, buf, BigInt(buf.length)));
      if (n < 0) {
        const errno = lastErrno();
        if (errno === Errno.EINTR) continue;
        throw failure(operation, this.path, errno);
      }
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
    }
    return concatBytes(chunks);
  }

  /** write(2) all of `buf` at the current position. */
  writeAll(buf: Uint8Array, operation = "write"): void {
    let done = 0;
    while (done < buf.length) {
      const chunk = buf.subarray(done);
      // SAFETY: `chunk` views caller-owned memory alive for the synchronous call.
      const n = Number(libc().write(this.fd, chunk, BigInt(chunk.length)));
      if (n < 0) {
        const errno = lastErrno();
        if (errno === Errno.EINTR) continue;
        throw failure(operation, this.path, errno);
      }
      done += n;
    }
  }

  /** fsync(2). */
  fsync(operation = "flush"): void {
    if (libc().fsync(this.fd) < 0) throw failure(operation, this.path);
  }

  /**
   * lseek(2). For `SEEK_DATA`/`SEEK_HOLE`, ENXIO (no more data past `offset`) returns
   * `undefined` instead of throwing.
   */
  seek(offset: number, whence: number, operation = "seek in"): number | undefined {
    const pos = Number(libc().lseek(this.fd, BigInt(offset), whence));
    if (pos >= 0) return pos;
    const errno = lastErrno();
    if (errno === Errno.ENXIO && (whence === SEEK_DATA || whence === SEEK_HOLE)) return undefined;
    throw failure(operation, this.path, errno);
  }

  /**
   * linkat(2) with `AT_EMPTY_PATH`: a new hard link `target` to this very inode, however
   * its path may have changed since it was opened (needs CAP_DAC_READ_SEARCH: root).
   */
  linkTo(target: string, operation = "link"): void {
    // SAFETY: both buffers are locals alive for the synchronous call.
    if (libc().linkat(this.fd, cString(""), AT_FDCWD, cString(target), AT_EMPTY_PATH) < 0) {
      throw failure(operation, target);
    }
  }

  /** ftruncate(2). */
  truncate(length: number, operation = "resize"): void {
    if (libc().ftruncate(this.fd, BigInt(length)) < 0) throw failure(operation, this.path);
  }

  /**
   * copy_file_range(2) of up to `length` bytes from `src` at `srcOffset` to this file at
   * `dstOffset`; returns bytes copied (0 at end of `src`).
   */
  copyRangeFrom(src: Fd, srcOffset: number, dstOffset: number, length: number): number {
    const offIn = new BigInt64Array([BigInt(srcOffset)]);
    const offOut = new BigInt64Array([BigInt(dstOffset)]);
    for (;;) {
      // SAFETY: the two 8-byte offset cells are locals alive for the synchronous call;
      // the kernel reads and updates them during the call only.
      const n = Number(
        libc().copy_file_range(
          src.fd,
          new Uint8Array(offIn.buffer),
          this.fd,
          new Uint8Array(offOut.buffer),
          BigInt(length),
          0,
        ),
      );
      if (n >= 0) return n;
      const errno = lastErrno();
      if (errno !== Errno.EINTR) {
        throw failure(`copy data from "${src.path}" into`, this.path, errno);
      }
    }
  }
}

/** Whether `path` exists (access(2) with F_OK), without Deno's /dev and /sys restrictions. */
export function pathExists(path: string): boolean {
  // SAFETY: the NUL-terminated name is a temporary that lives for the synchronous call.
  return libc().access(cString(path), F_OK) === 0;
}

// <asm-generic/socket.h>
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
/** sizeof(struct ucred): pid @0, uid @4, gid @8 (`<sys/socket.h>`, checked with gcc). */
export const UCRED_SIZE = 12;

/** The credentials of a unix-socket peer. */
export interface PeerCredentials {
  /** The peer's process id. */
  pid: number;
  /** Its effective uid. */
  uid: number;
  /** Its effective gid. */
  gid: number;
}

/** Decodes a `struct ucred`. Pure. */
export function decodeUcred(buf: Uint8Array): PeerCredentials {
  if (buf.length < UCRED_SIZE) {
    throw new RangeError(`Cannot decode ucred: need ${UCRED_SIZE} bytes, got ${buf.length}`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return { pid: dv.getInt32(0, true), uid: dv.getUint32(4, true), gid: dv.getUint32(8, true) };
}

/**
 * getsockopt(SO_PEERCRED) on a connected unix socket descriptor (for the root helper).
 *
 * @throws {LibcError} when the call fails.
 */
export function peerCredentials(socketFd: number): PeerCredentials {
  const buf = new Uint8Array(UCRED_SIZE);
  const len = new Uint32Array([UCRED_SIZE]);
  // SAFETY: `buf` and the socklen_t cell are locals alive for the synchronous call.
  const rc = libc().getsockopt(socketFd, SOL_SOCKET, SO_PEERCRED, buf, new Uint8Array(len.buffer));
  if (rc < 0) throw failure("read peer credentials of", `fd ${socketFd}`);
  return decodeUcred(buf);
}
