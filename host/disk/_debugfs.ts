/**
 * Pure pieces of the ext4 writer: guest-path checks, debugfs argument quoting, parsing
 * `ls -p` listings and rendering one batched `debugfs -w -f -` script from typed
 * operations. Folder-private; `host/disk/ext4.ts` re-exports what callers need.
 *
 * What debugfs's command parser (e2fsprogs `lib/ss/parse.c`, checked against debugfs
 * 1.47.0 here) accepts: script lines are read with fgets and cut at the first `\n` or
 * `\r`; inside a double-quoted argument every byte is literal (spaces, tabs, `\`, `'`,
 * `<`, non-ASCII) except `"`, written as `""`. So every argument is quoted, and only
 * names holding control characters (NUL, newline, CR, …) are refused.
 *
 * @module
 */

import { BangerError } from "../errors.ts";

/** A guest filesystem operation could not be planned or run. */
export class Ext4Error extends BangerError {}

// <linux/stat.h>
/** File type bits of `i_mode`. */
export const S_IFMT = 0o170000;
/** Regular file. */
export const S_IFREG = 0o100000;
/** Directory. */
export const S_IFDIR = 0o040000;
/** Symbolic link. */
export const S_IFLNK = 0o120000;

/** Longest guest path accepted, in bytes (PATH_MAX minus the NUL). */
const MAX_PATH_BYTES = 4095;
/** Longest name component (EXT4_NAME_LEN). */
const MAX_NAME_BYTES = 255;
/** debugfs reads script lines into an 8 KiB buffer; stay well below it. */
const MAX_LINE_BYTES = 8000;

/** What kind of inode sits at a path. */
export type InodeKind = "dir" | "file" | "symlink" | "other";

/** The kind encoded in an `i_mode`. Pure. */
export function kindOfMode(mode: number): InodeKind {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return "dir";
    case S_IFREG:
      return "file";
    case S_IFLNK:
      return "symlink";
    default:
      return "other";
  }
}

/** The type bits for a kind, to OR into a `sif … mode` value (it replaces all of i_mode). */
export function typeBits(kind: "dir" | "file" | "symlink"): number {
  return kind === "dir" ? S_IFDIR : kind === "file" ? S_IFREG : S_IFLNK;
}

function invalid(message: string): Ext4Error {
  return new Ext4Error(message, { code: "invalid_argument" });
}

/**
 * Checks a text debugfs can carry in a quoted argument: no control characters. Pure.
 *
 * @throws {Ext4Error} naming `what` and the offending character.
 */
export function checkEncodable(text: string, what: string): void {
  // deno-lint-ignore no-control-regex
  const bad = /[\x00-\x1f\x7f]/.exec(text);
  if (bad) {
    const code = bad[0].charCodeAt(0).toString(16).padStart(2, "0");
    throw invalid(
      `Cannot use ${what} ${
        JSON.stringify(text)
      }: it contains control character 0x${code}, which debugfs cannot encode`,
    );
  }
}

/**
 * Checks an absolute guest path: `/`-separated, no empty, `.` or `..` components, no
 * control characters, components of at most 255 bytes. Returns it without a trailing
 * slash. Pure.
 *
 * @throws {Ext4Error} with code `invalid_argument`.
 */
export function checkGuestPath(path: string): string {
  checkEncodable(path, "guest path");
  if (!path.startsWith("/")) throw invalid(`Cannot use guest path "${path}": it must be absolute`);
  const trimmed = path.length > 1 ? path.replace(/\/$/, "") : path;
  if (new TextEncoder().encode(trimmed).length > MAX_PATH_BYTES) {
    throw invalid(`Cannot use guest path "${path}": it is longer than ${MAX_PATH_BYTES} bytes`);
  }
  if (trimmed === "/") return trimmed;
  for (const part of trimmed.slice(1).split("/")) {
    if (part === "" || part === "." || part === "..") {
      throw invalid(`Cannot use guest path "${path}": it has an empty, "." or ".." component`);
    }
    if (new TextEncoder().encode(part).length > MAX_NAME_BYTES) {
      throw invalid(`Cannot use guest path "${path}": a component is over ${MAX_NAME_BYTES} bytes`);
    }
  }
  return trimmed;
}

/** Quotes one debugfs argument: `"…"` with `"` doubled. Pure. */
export function quoteDebugfsArg(arg: string): string {
  checkEncodable(arg, "debugfs argument");
  return `"${arg.replaceAll('"', '""')}"`;
}

/** The parent of an absolute guest path (`/` for top-level entries). Pure. */
export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** Every proper ancestor of `path` except `/`, outermost first. Pure. */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  for (let p = parentOf(path); p !== "/"; p = parentOf(p)) out.unshift(p);
  return out;
}

/** One entry of `debugfs ls -p`: `/ino/mode/uid/gid/name/size/`. */
export interface ListedEntry {
  /** Name inside its directory. */
  name: string;
  /** Full `i_mode`, type bits included. */
  mode: number;
  /** Owner uid. */
  uid: number;
  /** Owner gid. */
  gid: number;
}

/**
 * Parses the stdout of a `debugfs -f -` run made only of `ls -p` commands into a
 * listing per directory. A directory absent from the result does not exist (an existing
 * one always lists `.` and `..`). Names cannot contain `/`, so a crafted name cannot
 * forge an entry line. Pure.
 */
export function parseListings(stdout: string, dirs: readonly string[]): Map<string, ListedEntry[]> {
  const out = new Map<string, ListedEntry[]>();
  let current: ListedEntry[] | undefined;
  let index = -1;
  for (const line of stdout.split("\n")) {
    if (line.startsWith("debugfs: ls -p ")) {
      index++;
      current = [];
      continue;
    }
    const m = /^\/(\d+)\/(\d+)\/(\d+)\/(\d+)\/([^/]*)\/\d*\/$/.exec(line);
    if (!m || !current || index >= dirs.length) continue;
    if (current.length === 0) out.set(dirs[index], current);
    current.push({ name: m[5], mode: parseInt(m[2], 8), uid: Number(m[3]), gid: Number(m[4]) });
  }
  return out;
}

/** Renders `ls -p` for each directory, one per line. Pure. */
export function renderListScript(dirs: readonly string[]): string {
  return dirs.map((d) => `ls -p ${quoteDebugfsArg(d)}\n`).join("");
}

/** One line of a debugfs script from its command and arguments. Pure. */
export function debugfsLine(command: string, ...args: (string | number)[]): string {
  const line = [command, ...args.map((a) => typeof a === "number" ? String(a) : quoteDebugfsArg(a))]
    .join(" ");
  if (new TextEncoder().encode(line).length > MAX_LINE_BYTES) {
    throw invalid(
      `Cannot run debugfs command "${command}": the line is over ${MAX_LINE_BYTES} bytes`,
    );
  }
  return line;
}

/** `sif <path> mode 0<octal>` with the type bits included. Pure. */
export function setModeLine(path: string, kind: "dir" | "file" | "symlink", mode: number): string {
  return `${debugfsLine("sif", path)} mode 0${(typeBits(kind) | (mode & 0o7777)).toString(8)}`;
}

/** `sif <path> uid|gid <n>`. Pure. */
export function setIdLine(path: string, field: "uid" | "gid", id: number): string {
  return `${debugfsLine("sif", path)} ${field} ${id}`;
}

/** Owner and permission bits; unset fields default to root and the kind's usual mode. */
export interface Ext4Attrs {
  /** Permission bits (0–0o7777); the type bits are added for you. */
  mode?: number;
  /** Owner uid. @default {0} */
  uid?: number;
  /** Owner gid. @default {0} */
  gid?: number;
}

/**
 * One change to a guest filesystem, applied in list order by one debugfs run. Plain
 * data, so a whole batch can travel as one JSON request.
 */
export type Ext4Op =
  /** Create a directory and any missing parents (parents: root-owned 0755). @default mode 0o755 */
  | ({ kind: "mkdir"; path: string } & Ext4Attrs)
  /** Create or replace a regular file from exactly one of `text`, `base64` or `hostFile`. @default mode 0o644 */
  | (
    & { kind: "writeFile"; path: string; text?: string; base64?: string; hostFile?: string }
    & Ext4Attrs
  )
  /** Create or replace a symbolic link. */
  | { kind: "symlink"; path: string; target: string; uid?: number; gid?: number }
  /** Change owner and/or permission bits of an existing inode (type bits kept). */
  | ({ kind: "setAttrs"; path: string } & Ext4Attrs)
  /** Remove a file or symlink if present (directories are refused). */
  | { kind: "remove"; path: string };

function checkAttrs(op: Ext4Op): void {
  const a = op as Ext4Attrs;
  if (a.mode !== undefined && !(Number.isInteger(a.mode) && a.mode >= 0 && a.mode <= 0o7777)) {
    throw invalid(`Cannot use mode ${a.mode} for "${op.path}": it must be 0 to 0o7777`);
  }
  for (const field of ["uid", "gid"] as const) {
    const v = a[field];
    if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v < 0xffffffff)) {
      throw invalid(`Cannot use ${field} ${v} for "${op.path}": it must be 0 to 4294967294`);
    }
  }
}

/**
 * The directories whose `ls -p` listing the writer needs before planning: the parent
 * and every ancestor of every path, outermost first. Validates every path. Pure.
 *
 * @throws {Ext4Error} when a path or attribute is invalid.
 */
export function dirsToProbe(ops: readonly Ext4Op[]): string[] {
  const dirs = new Set<string>(["/"]);
  for (const op of ops) {
    const path = checkGuestPath(op.path);
    if (path === "/") throw invalid(`Cannot ${op.kind} "/": the root directory is fixed`);
    checkAttrs(op);
    if (op.kind === "symlink") {
      checkEncodable(op.target, "symlink target");
      if (op.target === "") throw invalid(`Cannot create symlink "${path}": empty target`);
    }
    for (const a of ancestorsOf(path)) dirs.add(a);
  }
  return [...dirs].sort((a, b) => a.split("/").length - b.split("/").length || a.localeCompare(b));
}

/** Tracks what exists while a script is planned: the listings plus the script's effects. */
class PlannedTree {
  readonly #listings: Map<string, ListedEntry[]>;
  readonly #changed = new Map<string, InodeKind | "absent">();

  constructor(listings: Map<string, ListedEntry[]>) {
    this.#listings = listings;
  }

  kind(path: string): InodeKind | "absent" {
    const changed = this.#changed.get(path);
    if (changed) return changed;
    const name = path.slice(path.lastIndexOf("/") + 1);
    const entry = this.#listings.get(parentOf(path))?.find((e) => e.name === name);
    return entry ? kindOfMode(entry.mode) : "absent";
  }

  set(path: string, kind: InodeKind | "absent"): void {
    this.#changed.set(path, kind);
  }
}

const KIND_WORDS: Record<InodeKind, string> = {
  dir: "directory",
  file: "file",
  symlink: "symlink",
  other: "special file",
};

function conflict(path: string, what: string, kind: InodeKind): Ext4Error {
  return new Ext4Error(`Cannot ${what} "${path}": a ${KIND_WORDS[kind]} is in the way`, {
    code: "conflict",
  });
}

function ensureParents(tree: PlannedTree, path: string, lines: string[], what: string): void {
  for (const dir of ancestorsOf(path)) {
    const kind = tree.kind(dir);
    if (kind === "dir") continue;
    if (kind !== "absent") throw conflict(dir, what, kind);
    lines.push(debugfsLine("mkdir", dir));
    tree.set(dir, "dir");
  }
}

function replaceable(tree: PlannedTree, path: string, lines: string[], what: string): void {
  const kind = tree.kind(path);
  if (kind === "file" || kind === "symlink") lines.push(debugfsLine("rm", path));
  else if (kind !== "absent") throw conflict(path, what, kind);
}

function ownerLines(path: string, op: { uid?: number; gid?: number }): string[] {
  return [setIdLine(path, "uid", op.uid ?? 0), setIdLine(path, "gid", op.gid ?? 0)];
}

/**
 * Renders the whole `debugfs -w -f -` script for `ops`, given the listings of
 * {@linkcode dirsToProbe}'s directories and, per op index, the host file a `writeFile`
 * copies. Never emits `mkdir` for an existing directory (debugfs 1.47 leaves an orphan
 * inode behind when it does) nor `write` over an existing name. Pure.
 *
 * @throws {Ext4Error} `conflict` when something of the wrong kind is in the way,
 *   `not_found` when `setAttrs` names a missing path.
 */
export function renderWriteScript(
  ops: readonly Ext4Op[],
  listings: Map<string, ListedEntry[]>,
  sources: readonly (string | undefined)[],
): string {
  const tree = new PlannedTree(listings);
  const lines: string[] = [];
  ops.forEach((op, i) => {
    const path = checkGuestPath(op.path);
    switch (op.kind) {
      case "mkdir": {
        ensureParents(tree, path, lines, "create directory");
        const kind = tree.kind(path);
        if (kind === "absent") lines.push(debugfsLine("mkdir", path));
        else if (kind !== "dir") throw conflict(path, "create directory", kind);
        tree.set(path, "dir");
        lines.push(setModeLine(path, "dir", op.mode ?? 0o755), ...ownerLines(path, op));
        break;
      }
      case "writeFile": {
        const source = sources[i];
        if (source === undefined) throw invalid(`Cannot write "${path}": no content given`);
        ensureParents(tree, path, lines, "write file");
        replaceable(tree, path, lines, "write file");
        lines.push(debugfsLine("write", source, path));
        tree.set(path, "file");
        lines.push(setModeLine(path, "file", op.mode ?? 0o644), ...ownerLines(path, op));
        break;
      }
      case "symlink":
        ensureParents(tree, path, lines, "create symlink");
        replaceable(tree, path, lines, "create symlink");
        lines.push(debugfsLine("symlink", path, op.target), ...ownerLines(path, op));
        tree.set(path, "symlink");
        break;
      case "setAttrs": {
        const kind = tree.kind(path);
        if (kind === "absent") {
          throw new Ext4Error(`Cannot set attributes of "${path}": it does not exist`, {
            code: "not_found",
          });
        }
        if (op.mode !== undefined && kind !== "other") lines.push(setModeLine(path, kind, op.mode));
        if (op.uid !== undefined) lines.push(setIdLine(path, "uid", op.uid));
        if (op.gid !== undefined) lines.push(setIdLine(path, "gid", op.gid));
        break;
      }
      case "remove": {
        const kind = tree.kind(path);
        if (kind === "dir") throw conflict(path, "remove", "dir");
        if (kind !== "absent") lines.push(debugfsLine("rm", path));
        tree.set(path, "absent");
        break;
      }
    }
  });
  return lines.map((l) => l + "\n").join("");
}

/** One inode whose owner and mode {@linkcode renderOwnershipScript} restores. */
export interface OwnershipEntry {
  /** Absolute path inside the image. */
  path: string;
  /** Its type, whose bits go into `i_mode`. */
  kind: "dir" | "file" | "symlink";
  /** Owner uid. */
  uid: number;
  /** Owner gid. */
  gid: number;
  /** Permission bits including setuid/setgid/sticky (0–0o7777). */
  mode: number;
  /** Extended attributes to set (file capabilities, `user.*`), values in base64. */
  xattrs?: { name: string; base64: string }[];
}

/** An extended attribute name debugfs can set: a namespace and a plain name. */
export const XATTR_NAME = /^(security|user|trusted)\.[A-Za-z0-9._@+-]{1,200}$/;

/**
 * Renders `sif` lines (mode with type bits, uid, gid) and `ea_set -f` lines for each
 * entry; `valueFile(i, j)` names the host file holding entry `i`'s xattr `j`. Pure.
 *
 * @throws {Ext4Error} `invalid_argument` for a path, attribute or xattr name debugfs
 *   cannot take.
 */
export function renderOwnershipScript(
  entries: readonly OwnershipEntry[],
  valueFile: (entry: number, xattr: number) => string = () => {
    throw invalid("Cannot set extended attributes without files for their values");
  },
): string {
  const lines: string[] = [];
  entries.forEach((e, i) => {
    const path = checkGuestPath(e.path);
    checkAttrs({ kind: "setAttrs", path, mode: e.mode, uid: e.uid, gid: e.gid });
    if (e.kind !== "symlink") lines.push(setModeLine(path, e.kind, e.mode));
    lines.push(setIdLine(path, "uid", e.uid), setIdLine(path, "gid", e.gid));
    (e.xattrs ?? []).forEach((x, j) => {
      if (!XATTR_NAME.test(x.name)) {
        throw invalid(`Cannot set extended attribute "${x.name}" on "${path}": not a name`);
      }
      lines.push(debugfsLine("ea_set", "-f", valueFile(i, j), path, x.name));
    });
  });
  return lines.map((l) => l + "\n").join("");
}

/**
 * The problems debugfs reported on stderr: every non-empty line except its version
 * banner. debugfs exits 0 even when commands fail, so this is how failure shows. Pure.
 */
export function debugfsProblems(stderr: string): string[] {
  return stderr.split("\n").map((l) => l.trim()).filter((l) =>
    l !== "" && !/^debugfs \d+\.\d+/.test(l)
  );
}
