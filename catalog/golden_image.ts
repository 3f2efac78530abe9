/**
 * Builds banger's default image, `debian-bookworm`, on the host from Debian's archive —
 * the same layout as a downloaded image bundle:
 *
 * ```
 * <outDir>/rootfs.ext4    ext4 of the guest tree, root-owned, ≥ 1 GiB
 * <outDir>/manifest.json  {name, distro, arch, kernel_ref, size, created_at}
 * ```
 *
 * Steps (root only; about a minute, most of it debootstrap):
 * 1. `debootstrap --variant=minbase --include=<GOLDEN_PACKAGES>` from the host's own
 *    Debian mirror (`apt_mirror.ts`) into a scratch tree. debootstrap chroots into the
 *    new tree to configure packages; banger itself runs nothing inside it.
 * 2. Finish the tree from the host side: remove the SSH host keys the package generated
 *    (each VM makes its own), empty `/etc/machine-id`, neutral hostname, hosts and
 *    resolv.conf (the guest writes its own at boot), the guest pieces (`guest/inject.ts`),
 *    a dpkg rule that keeps docs out of later installs, and no apt lists, caches, docs,
 *    man pages, locales or logs — the image is copied per VM where device-mapper is
 *    missing, so every megabyte counts.
 * 3. `mkfs.ext4 -d` into a file sized content × 1.5 (at least 1 GiB), `-E root_owner=0:0`,
 *    then the manifest, both written atomically.
 *
 * {@linkcode goldenImageRecipe} hashes everything that decides the result (suite,
 * packages, guest pieces, finishing version), for caches keyed by recipe.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { writeJsonAtomic } from "../host/os/atomic_file.ts";
import { BangerError, ExecError } from "../host/errors.ts";
import { run } from "../host/os/exec.ts";
import {
  literal,
  number,
  object,
  type ObjectOf,
  type Schema,
  string as str,
} from "../host/schema.ts";
import { findDebianMirror } from "./apt_mirror.ts";
import { guestPieces, writeGuestPieces } from "./guest/inject.ts";

/** A golden image that cannot be built. */
export class GoldenImageError extends BangerError {}

/** The default image's name. */
export const GOLDEN_IMAGE_NAME = "debian-bookworm";

/** Packages added to debootstrap's minbase. */
export const GOLDEN_PACKAGES: readonly string[] = [
  "systemd-sysv",
  "udev",
  "openssh-server",
  "iproute2",
  "ca-certificates",
  "git",
  "curl",
  "jq",
  "sudo",
  "socat",
  "kmod",
  "procps",
  "less",
];

/** Bumped whenever the finishing steps change, so recipe-keyed caches rebuild. */
const FINISH_VERSION = 1;
const MIN_SIZE = 1024 * 1024 * 1024;
const DEBOOTSTRAP_TIMEOUT_MS = 30 * 60_000;

const manifestShape = {
  name: str({ pattern: /^[a-z0-9][a-z0-9-]{0,62}$/, expected: "an image name" }),
  distro: str({ min: 1 }),
  arch: literal("x86_64"),
  kernel_ref: str({ min: 1 }),
  size: number({ int: true, min: 1 }),
  created_at: str({ min: 1 }),
};

/** `manifest.json` of an image directory. `size` is the byte size of `rootfs.ext4`. */
export type ImageManifest = ObjectOf<typeof manifestShape>;

/** Parses an image `manifest.json` body; rejects unknown fields. */
export const imageManifestSchema: Schema<ImageManifest> = object(manifestShape);

/** Options for {@linkcode buildGoldenImage}. */
export interface BuildGoldenImageOptions {
  /** Directory to fill (created if missing), usually a staging dir the caller renames. */
  outDir: string;
  /** Scratch parent for the debootstrap tree (removed afterwards); ~500 MB. */
  workDir: string;
  /** The kernel this image boots with, recorded as `kernel_ref`. */
  kernelRef: string;
  /** @default {"debian-bookworm"} */
  name?: string;
  /** Debian suite. @default {"bookworm"} */
  suite?: string;
  /** Archive URL. @default {the host's apt mirror for the suite} */
  mirror?: string;
  /** Stops debootstrap/mkfs when aborted. */
  signal?: AbortSignal;
  /** Told each step's name as it starts ("debootstrap", "finish", "mkfs"). */
  onStage?: (stage: string) => void;
  /** Clock for `created_at`. @default {() => new Date()} */
  now?: () => Date;
}

/**
 * A hex SHA-256 of everything that decides the image's contents. Pure.
 *
 * @example
 * ```ts
 * const cacheKey = goldenImageRecipe("bookworm").slice(0, 16);
 * ```
 */
export function goldenImageRecipe(suite = "bookworm"): string {
  const recipe = JSON.stringify({
    suite,
    variant: "minbase",
    packages: GOLDEN_PACKAGES,
    pieces: guestPieces(),
    finish: FINISH_VERSION,
  });
  return createHash("sha256").update(recipe).digest("hex");
}

/**
 * Builds `rootfs.ext4` and `manifest.json` into `outDir`.
 *
 * @throws {GoldenImageError} when not running as root (`permission_denied`), or when
 *   debootstrap or mkfs.ext4 fails (the message carries the end of their log).
 * @example
 * ```ts
 * const manifest = await buildGoldenImage({
 *   outDir: "/state/images/.staging-1",
 *   workDir: "/cache/banger/build",
 *   kernelRef: "debian-6.1-cloud",
 * });
 * manifest.size; // 1073741824
 * ```
 */
export async function buildGoldenImage(options: BuildGoldenImageOptions): Promise<ImageManifest> {
  const name = options.name ?? GOLDEN_IMAGE_NAME;
  const suite = options.suite ?? "bookworm";
  if (Deno.uid() !== 0) {
    throw new GoldenImageError(`Cannot build image "${name}": debootstrap needs root`, {
      code: "permission_denied",
      hint: "run as root, or pull the image from the catalog instead",
    });
  }
  const mirror = options.mirror ?? await findDebianMirror(suite);
  await Deno.mkdir(options.workDir, { recursive: true });
  const scratch = await Deno.makeTempDir({ dir: options.workDir, prefix: ".golden-" });
  const tree = `${scratch}/tree`;
  try {
    options.onStage?.("debootstrap");
    await debootstrap(name, suite, mirror, tree, options.signal);
    options.onStage?.("finish");
    await finishTree(tree);
    options.onStage?.("mkfs");
    const size = Math.max(MIN_SIZE, roundUpMiB((await treeBytes(tree)) * 1.5));
    await Deno.mkdir(options.outDir, { recursive: true });
    const image = `${options.outDir}/rootfs.ext4`;
    await mkfs(name, tree, `${image}.tmp`, size, options.signal);
    await Deno.rename(`${image}.tmp`, image);
    const manifest: ImageManifest = {
      name,
      distro: `debian-${suite}`,
      arch: "x86_64",
      kernel_ref: options.kernelRef,
      size: (await Deno.stat(image)).size,
      created_at: (options.now ?? (() => new Date()))().toISOString(),
    };
    await writeJsonAtomic(`${options.outDir}/manifest.json`, manifest, { mode: 0o644 });
    return manifest;
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

async function debootstrap(
  name: string,
  suite: string,
  mirror: string,
  tree: string,
  signal?: AbortSignal,
): Promise<void> {
  const args = [
    "--variant=minbase",
    `--include=${GOLDEN_PACKAGES.join(",")}`,
    "--components=main",
    suite,
    tree,
    mirror,
  ];
  try {
    await run("debootstrap", args, {
      signal,
      timeoutMs: DEBOOTSTRAP_TIMEOUT_MS,
      env: { DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" },
    });
  } catch (err) {
    const log = await Deno.readTextFile(`${tree}/debootstrap/debootstrap.log`).catch(() => "");
    const tail = log.trimEnd().split("\n").slice(-5).join("\n");
    const detail = err instanceof ExecError ? err.message : String(err);
    throw new GoldenImageError(
      `Cannot build image "${name}": debootstrap from "${mirror}" failed: ${detail}${
        tail ? `\n${tail}` : ""
      }`,
      { code: "unavailable", cause: err, hint: "check that the Debian mirror is reachable" },
    );
  }
}

/** Host-side finishing of the debootstrap tree; runs nothing inside it. */
async function finishTree(tree: string): Promise<void> {
  for await (const entry of Deno.readDir(`${tree}/etc/ssh`)) {
    if (entry.name.startsWith("ssh_host_")) await Deno.remove(`${tree}/etc/ssh/${entry.name}`);
  }
  await Deno.writeTextFile(`${tree}/etc/machine-id`, "");
  await Deno.remove(`${tree}/var/lib/dbus/machine-id`).catch(() => {});
  await Deno.writeTextFile(`${tree}/etc/hostname`, "banger\n");
  await Deno.writeTextFile(
    `${tree}/etc/hosts`,
    "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
  );
  await Deno.remove(`${tree}/etc/resolv.conf`).catch(() => {});
  await Deno.writeTextFile(`${tree}/etc/resolv.conf`, "# written at boot from guest.env\n");
  await writeGuestPieces(tree, guestPieces());
  await Deno.writeTextFile(
    `${tree}/etc/dpkg/dpkg.cfg.d/01-banger-nodoc`,
    "path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\npath-exclude=/usr/share/info/*\n",
  );
  const keep = new Set(["partial", "lock", "auxfiles"]);
  await emptyDir(`${tree}/var/lib/apt/lists`, (n) => !keep.has(n));
  await emptyDir(`${tree}/var/cache/apt`, (n) => n.endsWith(".bin"));
  await emptyDir(`${tree}/var/cache/apt/archives`, (n) => n.endsWith(".deb"));
  for (const dir of ["usr/share/doc", "usr/share/man", "usr/share/info", "tmp", "var/tmp"]) {
    await emptyDir(`${tree}/${dir}`, () => true);
  }
  await emptyDir(`${tree}/usr/share/locale`, (n) => n !== "locale.alias");
  await truncateLogs(`${tree}/var/log`);
}

async function emptyDir(dir: string, select: (name: string) => boolean): Promise<void> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) if (select(entry.name)) names.push(entry.name);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  for (const n of names) await Deno.remove(`${dir}/${n}`, { recursive: true });
}

/** Removes log files but keeps the directories packages expect (`/var/log/apt`, …). */
async function truncateLogs(dir: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) await truncateLogs(path);
    else await Deno.remove(path);
  }
}

/** Bytes the tree occupies in 4 KiB blocks, plus one 256-byte inode per entry. */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    const info = await Deno.lstat(path);
    total += 256 + Math.ceil(info.size / 4096) * 4096;
    if (info.isDirectory) total += await treeBytes(path);
  }
  return total;
}

function roundUpMiB(bytes: number): number {
  const mib = 1024 * 1024;
  return Math.ceil(bytes / mib) * mib;
}

async function mkfs(
  name: string,
  tree: string,
  image: string,
  size: number,
  signal?: AbortSignal,
): Promise<void> {
  await Deno.remove(image).catch(() => {});
  const args = [
    ...["-q", "-F", "-L", "banger-root", "-m", "0", "-E", "root_owner=0:0"],
    ...["-d", tree, image, `${size / 1024}k`],
  ];
  try {
    await run("mkfs.ext4", args, { signal, timeoutMs: 10 * 60_000 });
  } catch (err) {
    await Deno.remove(image).catch(() => {});
    throw new GoldenImageError(
      `Cannot build image "${name}": mkfs.ext4 failed: ${err instanceof Error ? err.message : err}`,
      { code: "internal", cause: err },
    );
  }
}
