/**
 * A streaming tar reader: ustar and GNU headers, pax extended headers (long paths, large
 * sizes, ids, extended attributes; unknown keys ignored), GNU long names (`L`) and long
 * link names (`K`). Entry bodies are streamed, never buffered whole.
 *
 * Written here rather than taken from npm: it is strict (every malformed header, pax
 * record or name is an error naming the entry) and streams, and no maintained package
 * does both without buffering or a CommonJS start-up cost.
 *
 * @module
 */

import { ByteReader } from "./_byte_reader.ts";
import { printable } from "./names.ts";
import { TarError } from "../errors.ts";
import { decodeBase64 } from "../../host/bytes.ts";

/** The kinds of entries a tar holds (pax and GNU meta entries are consumed internally). */
export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

/** One archive member. `body` must be read (or is skipped) before the next entry. */
export interface TarEntry {
  /** The path as stored (pax and GNU long names applied), UTF-8 decoded. */
  path: string;
  /** Entry kind. */
  type: TarEntryType;
  /** Permission bits including setuid, setgid and sticky (`& 0o7777`). */
  mode: number;
  /** Owner uid. */
  uid: number;
  /** Owner gid. */
  gid: number;
  /** Body length in bytes (0 for everything but files). */
  size: number;
  /** Modification time, seconds since the epoch. */
  mtime: number;
  /** Target of a symlink or hardlink, else "". */
  linkName: string;
  /**
   * Extended attributes by name (`security.capability`, `user.x`): pax `SCHILY.xattr.NAME`
   * records (raw bytes, as GNU tar and Docker write them) and `LIBARCHIVE.xattr.NAME` ones
   * (URL-encoded name, base64 value).
   */
  xattrs: ReadonlyMap<string, Uint8Array>;
  /** The body, in chunks; valid only until the next entry is requested. */
  body: AsyncIterable<Uint8Array>;
}

const BLOCK = 512;
const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  "6": "fifo",
};
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads `stream` as a tar archive, yielding entries in order. After the end-of-archive
 * marker the rest of the stream is drained (so a hash of it sees every byte).
 *
 * @throws {TarError} for a bad header checksum, a truncated archive, malformed pax
 *   records, non-UTF-8 names, or unsupported entry types (sparse, volume, unknown).
 * @example
 * ```ts
 * for await (const entry of readTar(stream)) {
 *   if (entry.type === "file") for await (const chunk of entry.body) sink(chunk);
 * }
 * ```
 */
export async function* readTar(stream: ReadableStream<Uint8Array>): AsyncGenerator<TarEntry> {
  const input = new ByteReader(stream);
  try {
    let globals: Record<string, string> = {};
    let pax: Record<string, string> = {};
    let xattrs = new Map<string, Uint8Array>();
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = await input.readExact(BLOCK, "a header");
      if (block === null) return;
      if (block.every((b) => b === 0)) {
        await input.drain();
        return;
      }
      const h = parseHeader(block);
      if (h.typeflag === "x" || h.typeflag === "g") {
        const parsed = parsePax(await input.readAll(h.size, h.name), h.name);
        if (h.typeflag === "g") globals = { ...globals, ...withoutPerEntryKeys(parsed.records) };
        else {
          pax = { ...pax, ...parsed.records };
          for (const [name, value] of parsed.xattrs) xattrs.set(name, value);
        }
        continue;
      }
      if (h.typeflag === "L" || h.typeflag === "K") {
        const text = cString(await input.readAll(h.size, h.name), h.name);
        if (h.typeflag === "L") longName = text;
        else longLink = text;
        continue;
      }
      const type = TYPES[h.typeflag];
      if (type === undefined) {
        throw new TarError(
          `Cannot read tar entry "${h.name}": entry type "${
            printable(h.typeflag)
          }" is not supported`,
          { code: "failed_precondition" },
        );
      }
      const meta = { ...globals, ...pax };
      const entry = { ...finishEntry(h, type, meta, longName, longLink), xattrs };
      pax = {};
      xattrs = new Map();
      longName = undefined;
      longLink = undefined;
      const body = input.body(entry.size, entry.path);
      yield { ...entry, body };
      await body.skipRest();
    }
  } finally {
    await input.cancel();
  }
}

function withoutPerEntryKeys(records: Record<string, string>): Record<string, string> {
  const { path: _p, linkpath: _l, size: _s, ...rest } = records;
  return rest;
}

interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkName: string;
}

function parseHeader(b: Uint8Array): RawHeader {
  const rawName = field(b, 0, 100);
  const stored = octal(b, 148, 8, rawName);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : b[i];
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new TarError(`Cannot read tar header "${printable(rawName)}": bad checksum`, {
      code: "invalid_argument",
    });
  }
  const ustar = b[257] === 0x75 && b[258] === 0x73 && b[259] === 0x74 && b[260] === 0x61 &&
    b[261] === 0x72 && b[262] === 0;
  const prefix = ustar ? field(b, 345, 155) : "";
  const name = prefix ? `${prefix}/${rawName}` : rawName;
  return {
    name,
    mode: octal(b, 100, 8, name) & 0o7777,
    uid: octal(b, 108, 8, name),
    gid: octal(b, 116, 8, name),
    size: octal(b, 124, 12, name),
    mtime: octal(b, 136, 12, name),
    typeflag: String.fromCharCode(b[156]),
    linkName: field(b, 157, 100),
  };
}

function finishEntry(
  h: RawHeader,
  type: TarEntryType,
  meta: Record<string, string>,
  longName: string | undefined,
  longLink: string | undefined,
): Omit<TarEntry, "body" | "xattrs"> {
  const path = meta.path ?? longName ?? h.name;
  const num = (key: string, fallback: number) => {
    const v = meta[key];
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!/^\d+(\.\d*)?$/.test(v) || !Number.isSafeInteger(Math.floor(n))) {
      throw new TarError(`Cannot read tar entry "${printable(path)}": bad pax ${key} "${v}"`, {
        code: "invalid_argument",
      });
    }
    return Math.floor(n);
  };
  const size = num("size", h.size);
  // Pre-POSIX (v7) archives have no directory type: an empty regular entry named with a
  // trailing slash is a directory, as POSIX keeps for compatibility. One with a body stays
  // a file, so a hostile "./" with content is still refused by its name.
  const kind = type === "file" && (h.typeflag === "0" || h.typeflag === "\0") &&
      path.endsWith("/") && size === 0
    ? "dir"
    : type;
  return {
    path,
    type: kind,
    mode: h.mode,
    uid: num("uid", h.uid),
    gid: num("gid", h.gid),
    size: kind === "file" ? size : 0,
    mtime: num("mtime", h.mtime),
    linkName: meta.linkpath ?? longLink ?? h.linkName,
  };
}

function field(b: Uint8Array, offset: number, length: number): string {
  const slice = b.subarray(offset, offset + length);
  const end = slice.indexOf(0);
  return decodeName(end === -1 ? slice : slice.subarray(0, end));
}

function decodeName(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new TarError(
      `Cannot read tar entry: name "${
        printable(new TextDecoder().decode(bytes))
      }" is not valid UTF-8`,
      { code: "invalid_argument" },
    );
  }
}

function octal(b: Uint8Array, offset: number, length: number, name: string): number {
  const slice = b.subarray(offset, offset + length);
  if ((slice[0] & 0x80) !== 0) {
    if ((slice[0] & 0x40) !== 0) throw badNumber(name);
    let n = slice[0] & 0x3f;
    for (let i = 1; i < slice.length; i++) n = n * 256 + slice[i];
    if (!Number.isSafeInteger(n)) throw badNumber(name);
    return n;
  }
  const text = new TextDecoder().decode(slice).replace(/[\0 ]+$/, "").replace(/^ +/, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw badNumber(name);
  return parseInt(text, 8);
}

function badNumber(name: string): TarError {
  return new TarError(`Cannot read tar header "${printable(name)}": malformed numeric field`, {
    code: "invalid_argument",
  });
}

/** The records of a pax header: text ones by key, and extended attributes as bytes. */
function parsePax(
  bytes: Uint8Array,
  name: string,
): { records: Record<string, string>; xattrs: Map<string, Uint8Array> } {
  const records: Record<string, string> = {};
  const xattrs = new Map<string, Uint8Array>();
  let pos = 0;
  while (pos < bytes.length) {
    const space = bytes.indexOf(0x20, pos);
    const lenText = space === -1 ? "" : new TextDecoder().decode(bytes.subarray(pos, space));
    const len = Number(lenText);
    if (
      !/^\d+$/.test(lenText) || len <= 0 || pos + len > bytes.length ||
      bytes[pos + len - 1] !== 0x0a
    ) {
      throw new TarError(`Cannot read pax header "${printable(name)}": malformed record`, {
        code: "invalid_argument",
      });
    }
    const record = bytes.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) {
      throw new TarError(`Cannot read pax header "${printable(name)}": record without "="`, {
        code: "invalid_argument",
      });
    }
    const key = decodeName(record.subarray(0, eq));
    // An xattr value is binary (security.capability is a struct): never decoded as text.
    const value = record.subarray(eq + 1);
    if (key.startsWith("SCHILY.xattr.")) {
      xattrs.set(key.slice("SCHILY.xattr.".length), value.slice());
    } else if (key.startsWith("LIBARCHIVE.xattr.")) {
      xattrs.set(...libarchiveXattr(key.slice("LIBARCHIVE.xattr.".length), value, name));
    } else records[key] = decodeName(value);
    pos += len;
  }
  return { records, xattrs };
}

function libarchiveXattr(
  encodedName: string,
  value: Uint8Array,
  header: string,
): [string, Uint8Array] {
  try {
    const text = new TextDecoder().decode(value);
    return [decodeURIComponent(encodedName), decodeBase64(text)];
  } catch {
    throw new TarError(
      `Cannot read pax header "${printable(header)}": extended attribute "${
        printable(encodedName)
      }" is not URL-encoded with a base64 value`,
      { code: "invalid_argument" },
    );
  }
}

function cString(bytes: Uint8Array, name: string): string {
  const end = bytes.indexOf(0);
  const text = decodeName(end === -1 ? bytes : bytes.subarray(0, end));
  if (text === "") {
    throw new TarError(`Cannot read GNU long name after "${printable(name)}": it is empty`, {
      code: "invalid_argument",
    });
  }
  return text;
}
