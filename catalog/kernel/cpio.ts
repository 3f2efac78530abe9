/**
 * Writes "newc" cpio archives, the format Linux unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst), so banger builds initrds
 * without a `cpio` program. Pure: no `Deno.*` calls; the output is reproducible (mtime 0,
 * inode numbers in entry order).
 *
 * Each entry is a 110-byte ASCII header — `070701` then 13 eight-digit hex fields: ino,
 * mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
 * namesize (with its NUL), check (0) — then the NUL-terminated name padded to a multiple
 * of 4, then the data padded to a multiple of 4. `TRAILER!!!` ends the archive. Kept here:
 * no maintained npm package writes newc reproducibly without streams of its own.
 *
 * @module
 */

import { BangerError } from "../../host/errors.ts";

/** An archive entry that cannot be encoded. */
export class CpioError extends BangerError {}

/** One archive member. `path` is relative (`bin/busybox`), parents listed before children. */
export type CpioEntry =
  | { kind: "dir"; path: string; mode: number }
  | { kind: "file"; path: string; mode: number; data: Uint8Array }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "chardev"; path: string; mode: number; major: number; minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const HEADER_SIZE = 110;

/**
 * Encodes `entries` (all owned by uid/gid 0) into a newc archive with its trailer.
 *
 * @throws {CpioError} for an absolute path, a `.`/`..` component, a NUL in a name, a
 *   permission mode outside 0o7777, a parent not listed earlier, or a repeated path.
 * @example
 * ```ts
 * const archive = encodeNewc([
 *   { kind: "dir", path: "bin", mode: 0o755 },
 *   { kind: "file", path: "init", mode: 0o755, data: new TextEncoder().encode("#!/bin/sh\n") },
 * ]);
 * ```
 */
export function encodeNewc(entries: readonly CpioEntry[]): Uint8Array {
  const seen = new Set<string>();
  const chunks: Uint8Array[] = [];
  let ino = 1;
  for (const entry of entries) {
    checkEntry(entry, seen);
    seen.add(entry.path);
    const data = entry.kind === "file"
      ? entry.data
      : entry.kind === "symlink"
      ? new TextEncoder().encode(entry.target)
      : new Uint8Array(0);
    chunks.push(
      header(entry.path, {
        ino: ino++,
        mode: typeBits(entry) | (entry.kind === "symlink" ? 0o777 : entry.mode),
        nlink: entry.kind === "dir" ? 2 : 1,
        size: data.length,
        rdevMajor: entry.kind === "chardev" ? entry.major : 0,
        rdevMinor: entry.kind === "chardev" ? entry.minor : 0,
      }),
      data,
      padding(data.length),
    );
  }
  chunks.push(
    header("TRAILER!!!", { ino: 0, mode: 0, nlink: 1, size: 0, rdevMajor: 0, rdevMinor: 0 }),
  );
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

function typeBits(entry: CpioEntry): number {
  switch (entry.kind) {
    case "dir":
      return S_IFDIR;
    case "file":
      return S_IFREG;
    case "symlink":
      return S_IFLNK;
    case "chardev":
      return S_IFCHR;
  }
}

function checkEntry(entry: CpioEntry, seen: ReadonlySet<string>): void {
  const bad = (why: string) =>
    new CpioError(`Cannot add "${entry.path}" to the archive: ${why}`, {
      code: "invalid_argument",
    });
  const parts = entry.path.split("/");
  if (entry.path === "" || entry.path.startsWith("/")) throw bad("paths must be relative");
  if (parts.some((p) => p === "" || p === "." || p === "..")) {
    throw bad("empty, '.' and '..' components are not allowed");
  }
  if (entry.path.includes("\0") || (entry.kind === "symlink" && entry.target.includes("\0"))) {
    throw bad("names cannot contain NUL");
  }
  if (entry.kind !== "symlink" && (entry.mode & ~0o7777) !== 0) {
    throw bad(`mode ${entry.mode.toString(8)} has bits outside 7777`);
  }
  if (seen.has(entry.path)) throw bad("it is listed twice");
  const parent = parts.slice(0, -1).join("/");
  if (parent !== "" && !seen.has(parent)) {
    throw bad(`its parent "${parent}" is not listed before it`);
  }
}

interface HeaderFields {
  ino: number;
  mode: number;
  nlink: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
}

function header(name: string, f: HeaderFields): Uint8Array {
  const nameBytes = new TextEncoder().encode(name);
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  const fields = [
    f.ino,
    f.mode,
    0, // uid
    0, // gid
    f.nlink,
    0, // mtime
    f.size,
    0, // devmajor
    0, // devminor
    f.rdevMajor,
    f.rdevMinor,
    nameBytes.length + 1,
    0, // check
  ];
  const text = "070701" + fields.map(hex).join("");
  const namePad = padding(HEADER_SIZE + nameBytes.length + 1).length;
  const out = new Uint8Array(HEADER_SIZE + nameBytes.length + 1 + namePad);
  out.set(new TextEncoder().encode(text), 0);
  out.set(nameBytes, HEADER_SIZE);
  return out;
}

function padding(length: number): Uint8Array {
  return new Uint8Array((4 - (length % 4)) % 4);
}
