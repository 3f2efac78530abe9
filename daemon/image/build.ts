/**
 * How each image source becomes `rootfs.ext4` + `manifest.json` in a staging directory:
 * a catalog bundle (download, verify, extract), the golden recipe (debootstrap on the
 * host), or an OCI image (pull, flatten, `mkfs.ext4 -d`, ownership pass, guest pieces
 * injected with debugfs). Everything here runs outside any lock.
 *
 * @module
 */

import type { BlobCache } from "../../catalog/oci/blob_cache.ts";
import { fetchBundle } from "../../catalog/bundle.ts";
import type { ImageEntry } from "../../catalog/catalog_index.ts";
import { buildGoldenImage, imageManifestSchema } from "../../catalog/golden_image.ts";
import { firstBoot } from "../../catalog/guest/first_boot.ts";
import { type GuestPiece, guestPieces } from "../../catalog/guest/inject.ts";
import type { OwnershipMap } from "../../catalog/oci/layers.ts";
import { pullImage } from "../../catalog/oci/pull.ts";
import { writeJsonAtomic } from "../../host/os/atomic_file.ts";
import { BangerError } from "../../host/errors.ts";
import type {
  Ext4Op,
  OwnershipEntry,
  PrivilegedOps,
} from "../../host/privileged/privileged_ops.ts";
import type { ImageSource } from "../../store/images.ts";
import type { OpContext } from "../rpc/server.ts";

/** An image build that failed. */
export class ImageBuildError extends BangerError {}

/** What a build produced in its staging directory. */
export interface BuiltImage {
  kernelRef: string;
  source: ImageSource;
  /** Kernel `init=` for images whose own init cannot be trusted to set things up. */
  init?: string;
  description?: string;
}

const MIN_IMAGE_BYTES = 1024 ** 3;

/** Fetches a catalog bundle into `dir`. */
export async function buildFromBundle(
  entry: ImageEntry & { bundle: NonNullable<ImageEntry["bundle"]> },
  dir: string,
  ctx: OpContext,
): Promise<BuiltImage> {
  const message = `Downloading ${entry.name}`;
  ctx.progress("download", message, { done: 0, total: entry.bundle.size });
  await fetchBundle({
    ...entry.bundle,
    kind: "image",
    destDir: dir,
    signal: ctx.signal,
    onProgress: (p) =>
      ctx.progress(
        p.phase === "download" ? "download" : "extract",
        p.phase === "download" ? message : `Extracting ${p.file ?? ""}`,
        {
          done: p.done,
          total: p.total,
        },
      ),
  });
  let kernelRef = entry.kernel_ref;
  try {
    kernelRef =
      imageManifestSchema.parse(JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`)))
        .kernel_ref;
  } catch (err) {
    throw new ImageBuildError(
      `Cannot use bundle of "${entry.name}": bad manifest.json: ${(err as Error).message}`,
      {
        code: "failed_precondition",
      },
    );
  }
  return {
    kernelRef,
    source: { kind: "catalog", url: entry.bundle.url, sha256: entry.bundle.sha256 },
    description: entry.description,
  };
}

/** Builds the golden image from Debian's archive into `dir` (needs root). */
export async function buildFromRecipe(
  entry: ImageEntry,
  dir: string,
  workDir: string,
  ctx: OpContext,
): Promise<BuiltImage> {
  const stages: Record<string, string> = {
    debootstrap: `Installing Debian into ${entry.name} (debootstrap; takes a minute)`,
    finish: "Adding banger's guest pieces",
    mkfs: "Building rootfs.ext4",
  };
  await Deno.mkdir(workDir, { recursive: true, mode: 0o700 });
  await buildGoldenImage({
    outDir: dir,
    workDir,
    kernelRef: entry.kernel_ref,
    name: entry.name,
    signal: ctx.signal,
    onStage: (stage) => ctx.progress(stage, stages[stage] ?? stage),
  });
  return {
    kernelRef: entry.kernel_ref,
    source: { kind: "golden", recipe: entry.recipe ?? entry.name },
    description: entry.description,
  };
}

/** Options of {@linkcode buildFromOci}. */
export interface OciBuildOptions {
  ref: string;
  name: string;
  kernelRef: string;
  /** Image size; default content × 1.5, at least 1 GiB. */
  sizeBytes?: number;
  dir: string;
  /** Scratch directory for the flattened tree (removed afterwards). */
  workDir: string;
  blobs: BlobCache;
  ops: PrivilegedOps;
  /** How far the image may expand (config `max_image_bytes`, `max_image_entries`). */
  limits?: { maxBytes: number; maxEntries: number };
}

/** Pulls an OCI image and turns it into a bootable `rootfs.ext4` in `o.dir`. */
export async function buildFromOci(o: OciBuildOptions, ctx: OpContext): Promise<BuiltImage> {
  await Deno.mkdir(o.workDir, { recursive: true, mode: 0o700 });
  const flat = await Deno.makeTempDir({ dir: o.workDir, prefix: "oci-" });
  try {
    const pulled = await pullImage({
      ref: o.ref,
      destDir: flat,
      cache: o.blobs,
      limits: o.limits,
      signal: ctx.signal,
      onProgress: (p) => {
        if (p.phase === "download") {
          ctx.progress("download", `Pulling ${o.ref}`, { done: p.done, total: p.total });
        } else if (p.phase === "extract") {
          ctx.progress("extract", `Applying layer ${p.layer}/${p.layers}`);
        }
      },
    });
    await dropBakedHostKeys(flat, pulled.metadata);
    const size = o.sizeBytes ?? Math.max(MIN_IMAGE_BYTES, roundUp(pulled.contentBytes * 1.5));
    if (pulled.contentBytes > size) {
      throw new ImageBuildError(
        `Cannot build image "${o.name}": its content (${pulled.contentBytes} bytes) does not fit in ${size} bytes`,
        { code: "invalid_argument", hint: "pass a larger --size" },
      );
    }
    const rootfs = `${o.dir}/rootfs.ext4`;
    ctx.progress("mkfs", `Building rootfs.ext4 (${Math.round(size / 1024 ** 2)} MiB)`);
    await o.ops.createWorkDisk({ path: rootfs, sizeBytes: size, label: "rootfs", fromDir: flat });
    ctx.progress("ownership", "Restoring owners and modes");
    await o.ops.applyExt4Ownership({ image: rootfs, entries: ownershipEntries(pulled.metadata) });
    ctx.progress("inject", "Adding banger's guest pieces");
    await o.ops.writeExt4({ image: rootfs, ops: piecesToOps(guestPieces({ firstBoot: true })) });
    await writeJsonAtomic(`${o.dir}/manifest.json`, {
      name: o.name,
      distro: o.ref,
      arch: "x86_64",
      kernel_ref: o.kernelRef,
      size,
      created_at: new Date().toISOString(),
    }, { mode: 0o644 });
    return {
      kernelRef: o.kernelRef,
      source: { kind: "oci", ref: o.ref, digest: pulled.manifestDigest },
      init: firstBoot.scriptPath,
      description: `OCI image ${o.ref}`,
    };
  } finally {
    await Deno.remove(flat, { recursive: true }).catch(() => {});
  }
}

/** Turns the pull's ownership map into the ext4 ownership pass entries. */
export function ownershipEntries(metadata: OwnershipMap): OwnershipEntry[] {
  const out: OwnershipEntry[] = [];
  for (const [path, m] of metadata) {
    // A hardlink shares its target's inode, which has its own entry.
    if (m.type === "hardlink") continue;
    const kind = m.type === "dir" ? "dir" : m.type === "symlink" ? "symlink" : "file";
    const entry: OwnershipEntry = { path, kind, uid: m.uid, gid: m.gid, mode: m.mode & 0o7777 };
    const xattrs = Object.entries(m.xattrs ?? {}).map(([name, base64]) => ({ name, base64 }));
    out.push(xattrs.length ? { ...entry, xattrs } : entry);
  }
  return out;
}

/** Turns guest pieces into ext4 operations, all owned by root. */
export function piecesToOps(pieces: readonly GuestPiece[]): Ext4Op[] {
  return pieces.map((p): Ext4Op =>
    p.kind === "dir"
      ? { kind: "mkdir", path: p.path, mode: p.mode, uid: 0, gid: 0 }
      : p.kind === "file"
      ? { kind: "writeFile", path: p.path, text: p.content, mode: p.mode, uid: 0, gid: 0 }
      : { kind: "symlink", path: p.path, target: p.target, uid: 0, gid: 0 }
  );
}

function roundUp(bytes: number): number {
  const mib = 1024 ** 2;
  return Math.ceil(bytes / mib) * mib;
}

/**
 * Removes SSH host keys baked into an image (`/etc/ssh/ssh_host_*`): every VM made from it
 * would share them, and banger pins a VM's key on first contact. The guest makes its own
 * at first boot (`catalog/guest/sshd_config.ts`). Only real directories are looked into:
 * the tree is an image's, and a symlinked `etc/ssh` must not lead off it.
 */
async function dropBakedHostKeys(tree: string, metadata: Map<string, unknown>): Promise<void> {
  for (const dir of [`${tree}/etc`, `${tree}/etc/ssh`]) {
    const info = await Deno.lstat(dir).catch(() => undefined);
    if (!info?.isDirectory) return;
  }
  for await (const entry of Deno.readDir(`${tree}/etc/ssh`)) {
    if (!entry.name.startsWith("ssh_host_")) continue;
    await Deno.remove(`${tree}/etc/ssh/${entry.name}`, { recursive: true });
    metadata.delete(`/etc/ssh/${entry.name}`);
  }
}
