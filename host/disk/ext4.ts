/**
 * ext4 images without mounting anything: create (truncate + `mkfs.ext4`, optionally
 * populated from a directory), write many files in one batched `debugfs -w -f -` run,
 * read a file, dump a tree, restore owners and modes, check (`e2fsck -fn`) and grow
 * (`resize2fs`).
 *
 * debugfs `sif <path> mode N` replaces the whole `i_mode`, type bits included, so every
 * mode written here has `S_IFREG`/`S_IFDIR`/`S_IFLNK` OR'd in (a directory left without
 * `S_IFDIR` makes the next mount fail with "Structure needs cleaning").
 *
 * @module
 */

import {
  checkEncodable,
  checkGuestPath,
  debugfsLine,
  debugfsProblems,
  dirsToProbe,
  Ext4Error,
  type Ext4Op,
  kindOfMode,
  type ListedEntry,
  type OwnershipEntry,
  parentOf,
  parseListings,
  renderListScript,
  renderOwnershipScript,
  renderWriteScript,
} from "./_debugfs.ts";
import { run } from "../os/exec.ts";
import { type E2fsAccess, e2fsAccess } from "./_confined.ts";
import { decodeBase64 } from "../bytes.ts";
import { because } from "../os/libc.ts";

export {
  checkGuestPath,
  type Ext4Attrs,
  Ext4Error,
  type Ext4Op,
  type ListedEntry,
  type OwnershipEntry,
  quoteDebugfsArg,
  renderOwnershipScript,
  renderWriteScript,
  XATTR_NAME,
} from "./_debugfs.ts";

/** `mkfs.ext4 -E` options: root-owned root dir, lazy init (saves ~0.5 s on 8 GiB). */
export const MKFS_EXTENDED_OPTIONS = "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1";
const MIN_SIZE = 1024 * 1024;

/** Options for {@linkcode createExt4}. */
export interface CreateExt4Options {
  /** Image file to create or overwrite. */
  path: string;
  /** Size of the image in bytes (at least 1 MiB). */
  sizeBytes: number;
  /** Filesystem label, at most 16 bytes of `A-Za-z0-9._-`. */
  label?: string;
  /** Populate from this host directory (`mkfs.ext4 -d`), for image builds. */
  fromDir?: string;
}

/**
 * Creates a sparse image file of `sizeBytes` and makes an ext4 filesystem in it.
 *
 * @throws {Ext4Error} when an option is invalid or `mkfs.ext4` fails.
 * @example
 * ```ts
 * await createExt4({ path: "/state/vms/abc/work.ext4", sizeBytes: 8 * 1024 ** 3 });
 * ```
 */
export async function createExt4(options: CreateExt4Options): Promise<void> {
  const { path, sizeBytes, label, fromDir } = options;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < MIN_SIZE) {
    throw new Ext4Error(`Cannot create "${path}" of ${sizeBytes} bytes: at least 1 MiB is needed`, {
      code: "invalid_argument",
    });
  }
  if (label !== undefined && !/^[A-Za-z0-9._-]{1,16}$/.test(label)) {
    throw new Ext4Error(`Cannot use filesystem label "${label}": 1 to 16 of A-Z a-z 0-9 . _ -`, {
      code: "invalid_argument",
    });
  }
  const args = ["-F", "-q", "-E", MKFS_EXTENDED_OPTIONS];
  if (label !== undefined) args.push("-L", label);
  if (fromDir !== undefined) args.push("-d", fromDir);
  // Built in a sibling temp file and renamed into place: an interrupted or failed mkfs
  // never leaves a half-made image at `path` for the next start to trust.
  const slash = path.lastIndexOf("/");
  const temp = `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.tmp-${
    crypto.randomUUID().slice(0, 8)
  }`;
  args.push(temp);
  try {
    try {
      using file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
      await file.truncate(sizeBytes);
    } catch (err) {
      throw new Ext4Error(`Cannot create image file "${path}": ${because(err)}`, { cause: err });
    }
    try {
      await run("mkfs.ext4", args);
    } catch (err) {
      throw new Ext4Error(`Cannot make an ext4 filesystem in "${path}": ${because(err)}`, {
        cause: err,
      });
    }
    await Deno.rename(temp, path);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw err;
  }
}

async function debugfs(
  image: string,
  args: string[],
  stdin?: string,
  what = "read",
  access?: E2fsAccess,
) {
  try {
    const out = access
      ? await access.run("debugfs", args, { stdin })
      : await run("debugfs", [...args, image], { stdin });
    return { stdout: out.stdout, problems: debugfsProblems(out.stderr) };
  } catch (err) {
    throw new Ext4Error(`Cannot ${what} "${image}" with debugfs: ${because(err)}`, { cause: err });
  }
}

/** Lists `dirs` in one debugfs run; a directory missing from the map does not exist. */
async function listDirs(
  image: string,
  dirs: string[],
  access?: E2fsAccess,
): Promise<Map<string, ListedEntry[]>> {
  const { stdout } = await debugfs(image, ["-f", "-"], renderListScript(dirs), "read", access);
  return parseListings(new TextDecoder().decode(stdout), dirs);
}

function failed(what: string, image: string, problems: string[]): Ext4Error {
  const shown = problems.slice(0, 5).join("; ");
  const more = problems.length > 5 ? ` (and ${problems.length - 5} more)` : "";
  return new Ext4Error(`Cannot ${what} in "${image}": debugfs reported: ${shown}${more}`);
}

/**
 * Writes each `writeFile` op's content to a temp file (a host file too, when the tools run
 * confined and could not read it); returns the host path per op.
 */
async function stageSources(
  ops: readonly Ext4Op[],
  dir: string,
  access: E2fsAccess,
): Promise<(string | undefined)[]> {
  return await Promise.all(ops.map(async (op, i) => {
    if (op.kind !== "writeFile") return undefined;
    const given = [op.text, op.base64, op.hostFile].filter((v) => v !== undefined).length;
    if (given !== 1) {
      throw new Ext4Error(
        `Cannot write "${op.path}": give exactly one of text, base64 or hostFile`,
        { code: "invalid_argument" },
      );
    }
    const path = `${dir}/${i}`;
    if (op.hostFile !== undefined) {
      checkEncodable(op.hostFile, "host file");
      if (access.uid === undefined) return op.hostFile;
      await Deno.copyFile(op.hostFile, path);
    } else {
      const bytes = op.text !== undefined
        ? new TextEncoder().encode(op.text)
        : decodeBase64(op.base64 ?? "");
      await Deno.writeFile(path, bytes, { mode: 0o600 });
    }
    await access.hand(path);
    return path;
  }));
}

/**
 * Applies `ops` in order with one listing run and one `debugfs -w` run: the authorized
 * key, guest config files and file_sync entries of a VM start all go in one batch.
 *
 * @throws {Ext4Error} `invalid_argument` for a path debugfs cannot encode or bad
 *   attributes (nothing is written then), `conflict` when a file sits where a directory
 *   is needed or the reverse, or when debugfs reports a failure.
 * @example
 * ```ts
 * await writeExt4("/state/vms/abc/work.ext4", [
 *   { kind: "mkdir", path: "/.ssh", mode: 0o700 },
 *   { kind: "writeFile", path: "/.ssh/authorized_keys", text: key, mode: 0o600 },
 * ], { confined: true });
 * ```
 */
export async function writeExt4(
  image: string,
  ops: readonly Ext4Op[],
  options: Ext4Confinement = {},
): Promise<void> {
  if (ops.length === 0) return;
  const dirs = dirsToProbe(ops);
  const tmp = await Deno.makeTempDir({ prefix: "banger-ext4-" });
  const access = await e2fsAccess(image, options.confined ?? false);
  try {
    checkEncodable(tmp, "temporary directory");
    await access.hand(tmp);
    const sources = await stageSources(ops, tmp, access);
    const script = renderWriteScript(ops, await listDirs(image, dirs, access), sources);
    const { problems } = await debugfs(image, ["-w", "-f", "-"], script, "write", access);
    if (problems.length) throw failed("write files", image, problems);
  } finally {
    await access.close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Options of the ext4 operations that may meet a disk the guest wrote. */
export interface Ext4Confinement {
  /**
   * Run the tools confined (`host/disk/_confined.ts`): as root, they then run as a
   * throwaway uid that reaches only this image. @default {false}
   */
  confined?: boolean;
}

/**
 * Restores owners and modes (setuid bits included) with one batched debugfs run, e.g.
 * after `mkfs.ext4 -d` of an unpacked OCI image made every file the builder's.
 *
 * @throws {Ext4Error} when an entry is invalid or debugfs reports a failure.
 */
export async function applyExt4Ownership(
  image: string,
  entries: readonly OwnershipEntry[],
): Promise<void> {
  if (entries.length === 0) return;
  const setOwners = async (valueFile?: (i: number, j: number) => string) => {
    const script = renderOwnershipScript(entries, valueFile);
    const { problems } = await debugfs(image, ["-w", "-f", "-"], script, "set owners");
    if (problems.length) throw failed("set owners", image, problems);
  };
  if (!entries.some((e) => e.xattrs?.length)) return await setOwners();
  // ea_set reads a value from a file: xattr values are binary.
  const tmp = await Deno.makeTempDir({ prefix: "banger-xattr-" });
  try {
    checkEncodable(tmp, "temporary directory");
    const valueFile = (i: number, j: number) => `${tmp}/${i}.${j}`;
    for (const [i, e] of entries.entries()) {
      for (const [j, x] of (e.xattrs ?? []).entries()) {
        await Deno.writeFile(valueFile(i, j), decodeBase64(x.base64), { mode: 0o600 });
      }
    }
    await setOwners(valueFile);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/**
 * Reads one regular file from an image.
 *
 * @throws {Ext4Error} `not_found` when it does not exist, `invalid_argument` when it is
 *   not a regular file.
 * @example
 * ```ts
 * const hostname = new TextDecoder().decode(await readExt4File(image, "/etc/hostname"));
 * ```
 */
export async function readExt4File(image: string, path: string): Promise<Uint8Array> {
  const file = checkGuestPath(path);
  const parent = parentOf(file);
  const name = file.slice(file.lastIndexOf("/") + 1);
  const entry = (await listDirs(image, [parent])).get(parent)?.find((e) => e.name === name);
  if (!entry) {
    throw new Ext4Error(`Cannot read "${file}" from "${image}": it does not exist`, {
      code: "not_found",
    });
  }
  if (kindOfMode(entry.mode) !== "file") {
    throw new Ext4Error(`Cannot read "${file}" from "${image}": it is not a regular file`, {
      code: "invalid_argument",
    });
  }
  const { stdout, problems } = await debugfs(image, ["-R", debugfsLine("cat", file)]);
  if (problems.length) throw failed(`read "${file}"`, image, problems);
  return stdout;
}

/**
 * Copies the tree at `path` out of the image into the existing host directory `dest`
 * (`debugfs rdump`), keeping modes and owners.
 *
 * @throws {Ext4Error} when the path is invalid or debugfs reports a failure.
 */
export async function dumpExt4(image: string, path: string, dest: string): Promise<void> {
  const from = checkGuestPath(path);
  checkEncodable(dest, "destination directory");
  const { problems } = await debugfs(image, ["-R", debugfsLine("rdump", from, dest)]);
  if (problems.length) throw failed(`dump "${from}"`, image, problems);
}

/** What {@linkcode checkExt4} found. */
export interface Ext4Check {
  /** Whether `e2fsck -fn` found nothing to fix. */
  clean: boolean;
  /** Its exit code (0 clean, 4 errors left uncorrected). */
  exitCode: number;
  /** Its output, for the report. */
  output: string;
}

/**
 * Checks an image read-only with `e2fsck -fn`. Inspecting never throws for a dirty
 * filesystem: that is reported in the result.
 *
 * @throws {Ext4Error} when e2fsck cannot run at all (exit code 8 or more).
 */
export async function checkExt4(image: string): Promise<Ext4Check> {
  try {
    const out = await run("e2fsck", ["-fn", image], { okCodes: [0, 1, 2, 4] });
    return {
      clean: out.code === 0,
      exitCode: out.code,
      output: new TextDecoder().decode(out.stdout) + out.stderr,
    };
  } catch (err) {
    throw new Ext4Error(`Cannot check "${image}": ${because(err)}`, { cause: err });
  }
}

/**
 * Grows an image file to `sizeBytes` and its filesystem with it (`e2fsck -fp`, then
 * `resize2fs`), for `vm set --disk-size`. The same size is a no-op.
 *
 * @throws {Ext4Error} `invalid_argument` when asked to shrink, or when a tool fails.
 */
export async function growExt4(
  image: string,
  sizeBytes: number,
  options: Ext4Confinement = {},
): Promise<void> {
  const current = (await Deno.stat(image)).size;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < current) {
    throw new Ext4Error(
      `Cannot resize "${image}" to ${sizeBytes} bytes: it is ${current} bytes and shrinking is not supported`,
      { code: "invalid_argument" },
    );
  }
  if (sizeBytes === current) return;
  try {
    using file = await Deno.open(image, { write: true });
    await file.truncate(sizeBytes);
    const access = await e2fsAccess(image, options.confined ?? false);
    try {
      await access.run("e2fsck", ["-fp"], { okCodes: [0, 1] });
      await access.run("resize2fs", []);
    } finally {
      await access.close();
    }
  } catch (err) {
    throw new Ext4Error(`Cannot grow "${image}" to ${sizeBytes} bytes: ${because(err)}`, {
      cause: err,
    });
  }
}
