/**
 * Reading and writing `/proc` and `/sys` files through libc, because Deno's file APIs
 * refuse those trees without `--allow-all` (reference/host-primitives-lab.md §7). Used by
 * the doctor, liveness checks (`/proc/<pid>/stat`), loop discovery
 * (`/sys/block/loop*\/loop/backing_file`) and `net.ipv4.ip_forward`.
 *
 * @module
 */

import {
  clearErrno,
  cString,
  Errno,
  failure,
  Fd,
  lastErrno,
  libc,
  LibcError,
  O_RDONLY,
  O_WRONLY,
} from "./libc.ts";

/** Largest file {@linkcode readProcFile} returns by default: 1 MiB. */
export const PROC_READ_LIMIT = 1024 * 1024;

/**
 * Reads a whole `/proc` or `/sys` file as text (these report size 0, so it reads to end
 * of file).
 *
 * @param maxBytes stop after this many bytes. @default {PROC_READ_LIMIT}
 * @throws {LibcError} when it cannot be opened or read (ENOENT when absent).
 * @example
 * ```ts
 * const stat = readProcFile(`/proc/${pid}/stat`);
 * ```
 */
export function readProcFile(path: string, maxBytes: number = PROC_READ_LIMIT): string {
  using fd = Fd.open(path, O_RDONLY, "open");
  return new TextDecoder().decode(fd.readAll(maxBytes, "read"));
}

/**
 * Like {@linkcode readProcFile} but `undefined` when the file does not exist (ENOENT or
 * ENXIO), e.g. a loop device's `backing_file` after it was detached.
 *
 * @throws {LibcError} for any other failure.
 */
export function readProcFileIfExists(path: string, maxBytes = PROC_READ_LIMIT): string | undefined {
  try {
    return readProcFile(path, maxBytes);
  } catch (err) {
    if (err instanceof LibcError && (err.errno === Errno.ENOENT || err.errno === Errno.ENXIO)) {
      return undefined;
    }
    throw err;
  }
}

/**
 * Writes `text` to a `/proc/sys` or `/sys` file in one write(2), as sysctl does.
 *
 * @throws {LibcError} when it cannot be opened or written.
 * @example
 * ```ts
 * writeProcFile("/proc/sys/net/ipv4/ip_forward", "1\n");
 * ```
 */
export function writeProcFile(path: string, text: string): void {
  using fd = Fd.open(path, O_WRONLY, "open for writing");
  fd.writeAll(new TextEncoder().encode(text), "write");
}

// <dirent.h> struct dirent64 on x86_64: d_type at 18, d_name at 19 (checked with gcc).
const DIRENT_TYPE_OFFSET = 18;
const DIRENT_NAME_OFFSET = 19;

/** One directory entry read through libc. */
export interface DirEntry {
  /** The entry's name. */
  name: string;
  /** `d_type`: 4 directory, 8 regular file, 10 symlink, 0 unknown (`<dirent.h>`). */
  type: number;
}

/**
 * Lists a `/proc`, `/sys` or `/dev` directory with opendir/readdir (Deno's readDir
 * refuses them), skipping `.` and `..`.
 *
 * @throws {LibcError} when it cannot be opened or read.
 */
export function listProcDir(path: string): DirEntry[] {
  const lib = libc();
  const name = cString(path);
  // SAFETY: `name` lives for the synchronous call; opendir copies what it needs.
  const dir = lib.opendir(name);
  if (dir === null) throw failure("list directory", path);
  const out: DirEntry[] = [];
  try {
    for (;;) {
      clearErrno();
      const entry = lib.readdir(dir);
      if (entry === null) {
        const errno = lastErrno();
        if (errno !== 0) throw failure("list directory", path, errno);
        break;
      }
      // SAFETY: readdir's result points into the DIR stream's buffer, valid until the next
      // readdir/closedir on `dir`; both fields are copied out before either happens.
      const view = new Deno.UnsafePointerView(entry);
      const entryName = view.getCString(DIRENT_NAME_OFFSET);
      if (entryName === "." || entryName === "..") continue;
      out.push({ name: entryName, type: view.getUint8(DIRENT_TYPE_OFFSET) });
    }
  } finally {
    lib.closedir(dir);
  }
  return out;
}

/** The entry names of a `/proc` or `/sys` directory, sorted; none when it does not exist. */
export function listProcDirIfExists(path: string): string[] {
  try {
    return listProcDir(path).map((e) => e.name).sort();
  } catch (err) {
    if (err instanceof LibcError && err.errno === Errno.ENOENT) return [];
    throw err;
  }
}
