/**
 * Images: pull (catalog bundle, golden recipe or OCI reference), register, promote,
 * delete, list, and the auto-pull `vm create` relies on. Pulls of one name coalesce under
 * a per-name lock that an aborted waiter leaves at once; the loser of a race takes the
 * winner's image (DESIGN.md invariants 2–3). Builds run outside every lock; publication
 * is a short rename + upsert under the publish lock.
 *
 * @module
 */

import type { BlobCache } from "../../catalog/oci/blob_cache.ts";
import type { Catalogs, ImageEntry } from "../../catalog/catalog_index.ts";
import { defaultImageName, parseImageRef } from "../../catalog/oci/ref.ts";
import { BangerError, errorMessage } from "../../host/errors.ts";
import { buildCacheDir, imagesDir, type Layout } from "../../host/layout.ts";
import type { PrivilegedOps } from "../../host/privileged/privileged_ops.ts";
import { copySparse } from "../../host/disk/sparse_writer.ts";
import type { Store } from "../../store/db.ts";
import {
  deleteImage,
  getImageByName,
  type ImageRecord,
  listImages,
  upsertImage,
  vmsUsingImage,
} from "../../store/images.ts";
import { buildFromBundle, buildFromOci, buildFromRecipe, type BuiltImage } from "./build.ts";
import type { KernelService } from "./kernel_service.ts";
import { KeyedLock, Mutex } from "../locks.ts";
import type { OpContext } from "../rpc/server.ts";
import { parseSize } from "../api/size.ts";
import { createStaging, type StagingDir } from "./staging.ts";

/** An image operation that cannot be done. */
export class ImageError extends BangerError {}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** What the service needs. */
export interface ImageServiceDeps {
  layout: Layout;
  store: Store;
  ops: PrivilegedOps;
  kernels: KernelService;
  blobs: BlobCache;
  catalogs: (signal?: AbortSignal) => Promise<Catalogs>;
  /** How far a pulled OCI image may expand. @default {IMAGE_LIMITS} */
  imageLimits?: { maxBytes: number; maxEntries: number };
}

/** A pull request as the RPC delivers it. */
export interface PullRequest {
  source: string;
  name?: string;
  kernelRef?: string;
  size?: string;
}

/** Owns the images directory, image rows and their locks. */
export class ImageService {
  // pull[image:name]: taken first, never while holding vm/create/publish; a kernel pull
  // lock may be taken inside it (image → kernel, never the reverse).
  readonly #pullLocks = new KeyedLock("image pull");
  // guards rename into images/<name> + row upsert/delete; a leaf lock.
  readonly #publish = new Mutex("image publish");
  readonly #deps: ImageServiceDeps;

  constructor(deps: ImageServiceDeps) {
    this.#deps = deps;
  }

  /** The image named `name`. @throws {ImageError} `not_found`. */
  get(name: string): ImageRecord {
    const image = getImageByName(this.#deps.store, name);
    if (!image) {
      throw new ImageError(`Cannot find image "${name}"`, {
        code: "not_found",
        hint: "banger image list --available",
      });
    }
    return image;
  }

  /** Every image. */
  list(): ImageRecord[] {
    return listImages(this.#deps.store);
  }

  /** Names of VMs using the image. */
  usedBy(image: ImageRecord): string[] {
    return this.#deps.store.read((db) => vmsUsingImage(db, image.id));
  }

  /**
   * The image `name`, pulled from the catalog first when missing (what `vm create`
   * uses). Parallel callers for one name share one pull.
   *
   * @throws {ImageError} `not_found` when it is neither local nor in the catalog.
   */
  async resolve(name: string, ctx: OpContext): Promise<ImageRecord> {
    const local = getImageByName(this.#deps.store, name);
    if (local) return local;
    const entry = await this.#catalogEntry(name, ctx.signal);
    if (!entry) {
      throw new ImageError(`Cannot find image "${name}": it is neither pulled nor in the catalog`, {
        code: "not_found",
        hint: "banger image list --available, or: banger image pull <oci-ref> --name " + name,
      });
    }
    ctx.progress("image", `Pulling image ${name} from the catalog`);
    return (await this.pull({ source: name }, ctx)).image;
  }

  /**
   * Pulls a catalog image or an OCI reference. When the image is already there — pulled
   * earlier, or by a peer this call waited for — it is returned with `already: true`.
   *
   * @throws {ImageError} `invalid_argument` for a bad name, size or reference.
   */
  async pull(req: PullRequest, ctx: OpContext): Promise<{ image: ImageRecord; already: boolean }> {
    const entry = await this.#catalogEntry(req.source, ctx.signal);
    const plan = entry ? undefined : planOci(req.source);
    const name = req.name ?? entry?.name ?? plan?.name ?? "";
    checkName(name);
    const sizeBytes = req.size === undefined ? undefined : parseSize(req.size);
    if (req.size !== undefined && sizeBytes === undefined) {
      throw new ImageError(`Cannot use --size "${req.size}": not a positive size such as "4G"`, {
        code: "invalid_argument",
      });
    }
    const existing = getImageByName(this.#deps.store, name);
    if (existing) return { image: existing, already: true };

    using _pull = await this.#pullLocks.acquire(name, ctx.signal);
    const peer = getImageByName(this.#deps.store, name);
    if (peer) return { image: peer, already: true };

    const kernelRef = req.kernelRef ?? entry?.kernel_ref ??
      (await this.#defaultKernelRef(ctx.signal));
    const kernel = await this.#deps.kernels.resolve(kernelRef, ctx);
    await using staging = await createStaging(imagesDir(this.#deps.layout), name);
    let built: BuiltImage;
    const workDir = buildCacheDir(this.#deps.layout);
    if (entry?.bundle) {
      built = await buildFromBundle({ ...entry, bundle: entry.bundle }, staging.path, ctx);
    } else if (entry) built = await buildFromRecipe(entry, staging.path, workDir, ctx);
    else {
      built = await buildFromOci({
        ref: req.source,
        name,
        kernelRef: kernel.name,
        sizeBytes,
        dir: staging.path,
        workDir,
        blobs: this.#deps.blobs,
        ops: this.#deps.ops,
        limits: this.#deps.imageLimits,
      }, ctx);
    }
    const image = await this.#publishImage(
      name,
      staging,
      { ...built, kernelRef: kernel.name },
      ctx,
    );
    return { image, already: false };
  }

  /**
   * Records an existing rootfs in place (unmanaged): with a kernel row, or explicit
   * kernel/initrd files.
   *
   * @throws {ImageError} `conflict` when the name is taken, `invalid_argument` for
   *   missing files or both kernel forms.
   */
  async register(
    req: { name: string; rootfs: string; kernelRef?: string; kernel?: string; initrd?: string },
    ctx: OpContext,
  ): Promise<ImageRecord> {
    checkName(req.name);
    if ((req.kernelRef === undefined) === (req.kernel === undefined)) {
      throw new ImageError(
        "Cannot register an image: give exactly one of --kernel-ref or --kernel",
        {
          code: "invalid_argument",
        },
      );
    }
    if (req.initrd && !req.kernel) {
      throw new ImageError("Cannot register an image: --initrd needs --kernel", {
        code: "invalid_argument",
      });
    }
    const size = await fileSize(req.rootfs, "rootfs");
    for (const [what, p] of [["kernel", req.kernel], ["initrd", req.initrd]] as const) {
      if (p) await fileSize(p, what);
    }
    const kernel = req.kernelRef ? await this.#deps.kernels.resolve(req.kernelRef, ctx) : undefined;
    using _pull = await this.#pullLocks.acquire(req.name, ctx.signal);
    using _pub = await this.#publish.acquire(ctx.signal);
    if (getImageByName(this.#deps.store, req.name)) throw taken(req.name);
    const now = new Date().toISOString();
    const image: ImageRecord = {
      id: randomId(),
      name: req.name,
      ...(kernel ? { kernelName: kernel.name } : {}),
      ...(req.kernel
        ? { kernelFiles: { vmlinux: req.kernel, ...(req.initrd ? { initrd: req.initrd } : {}) } }
        : {}),
      rootfs: req.rootfs,
      sizeBytes: size,
      source: { kind: "register" },
      hasGuestPieces: false,
      createdAt: now,
      updatedAt: now,
    };
    this.#deps.store.write((db) => upsertImage(db, image));
    return image;
  }

  /** Copies a registered image's files into banger's store, making it managed. */
  async promote(name: string, ctx: OpContext): Promise<ImageRecord> {
    using _pull = await this.#pullLocks.acquire(name, ctx.signal);
    const image = this.get(name);
    if (image.dir) return image;
    await using staging = await createStaging(imagesDir(this.#deps.layout), name);
    ctx.progress("copy", `Copying ${image.rootfs}`);
    const copy = (from: string, file: string) =>
      copySparse(from, `${staging.path}/${file}`, { signal: ctx.signal });
    await copy(image.rootfs, "rootfs.ext4");
    if (image.kernelFiles) {
      await copy(image.kernelFiles.vmlinux, "vmlinux");
      if (image.kernelFiles.initrd) await copy(image.kernelFiles.initrd, "initrd.img");
    }
    const dir = `${imagesDir(this.#deps.layout)}/${name}`;
    using _pub = await this.#publish.acquire(ctx.signal);
    await staging.publishTo(dir);
    const promoted: ImageRecord = {
      ...image,
      rootfs: `${dir}/rootfs.ext4`,
      dir,
      ...(image.kernelFiles
        ? {
          kernelFiles: {
            vmlinux: `${dir}/vmlinux`,
            ...(image.kernelFiles.initrd ? { initrd: `${dir}/initrd.img` } : {}),
          },
        }
        : {}),
      source: { kind: "promote", from: image.rootfs },
      updatedAt: new Date().toISOString(),
    };
    this.#deps.store.write((db) => upsertImage(db, promoted));
    return promoted;
  }

  /** Deletes an image and (for managed images) its files. @throws {ImageError} `conflict` while VMs use it. */
  async delete(name: string, ctx: OpContext): Promise<void> {
    using _pull = await this.#pullLocks.acquire(name, ctx.signal);
    const image = this.get(name);
    {
      using _pub = await this.#publish.acquire(ctx.signal);
      this.#deps.store.write((db) => {
        const users = vmsUsingImage(db, image.id);
        if (users.length) {
          throw new ImageError(
            `Cannot delete image "${name}": used by VM${users.length > 1 ? "s" : ""} ${
              users.join(", ")
            }`,
            {
              code: "conflict",
              hint: `banger vm delete ${users.join(" ")}`,
            },
          );
        }
        deleteImage(db, image.id);
      });
    }
    if (image.dir) await Deno.remove(image.dir, { recursive: true }).catch(() => {});
    ctx.log.info("image deleted", { image: name });
  }

  /** Catalog images and whether each is pulled. */
  async available(
    signal?: AbortSignal,
  ): Promise<{ name: string; description: string; pulled: boolean }[]> {
    const catalogs = await this.#deps.catalogs(signal);
    return catalogs.images.map((e) => ({
      name: e.name,
      description: e.description,
      pulled: getImageByName(this.#deps.store, e.name) !== undefined,
    }));
  }

  async #catalogEntry(name: string, signal?: AbortSignal): Promise<ImageEntry | undefined> {
    return (await this.#deps.catalogs(signal)).images.find((e) => e.name === name);
  }

  async #defaultKernelRef(signal?: AbortSignal): Promise<string> {
    const first = (await this.#deps.catalogs(signal)).images[0];
    if (!first) {
      throw new ImageError("Cannot pick a kernel: the catalog is empty; pass --kernel-ref");
    }
    return first.kernel_ref;
  }

  async #publishImage(
    name: string,
    staging: StagingDir,
    built: BuiltImage,
    ctx: OpContext,
  ): Promise<ImageRecord> {
    const dir = `${imagesDir(this.#deps.layout)}/${name}`;
    const size = await fileSize(`${staging.path}/rootfs.ext4`, "rootfs");
    const now = new Date().toISOString();
    const image: ImageRecord = {
      id: randomId(),
      name,
      kernelName: built.kernelRef,
      rootfs: `${dir}/rootfs.ext4`,
      dir,
      sizeBytes: size,
      source: built.source,
      hasGuestPieces: true,
      ...(built.init ? { init: built.init } : {}),
      ...(built.description ? { description: built.description } : {}),
      createdAt: now,
      updatedAt: now,
    };
    using _pub = await this.#publish.acquire(ctx.signal);
    const peer = getImageByName(this.#deps.store, name);
    if (peer) return peer;
    await staging.publishTo(dir);
    this.#deps.store.write((db) => upsertImage(db, image));
    ctx.log.info("image published", { image: name, source: built.source.kind, bytes: size });
    return image;
  }
}

function planOci(source: string): { name: string } {
  try {
    const ref = parseImageRef(source);
    return { name: defaultImageName(ref) };
  } catch (err) {
    throw new ImageError(
      `Cannot pull "${source}": it is not in the catalog and not an OCI reference: ${
        errorMessage(err)
      }`,
      {
        code: "invalid_argument",
        hint: "banger image list --available",
      },
    );
  }
}

function checkName(name: string): void {
  if (!NAME.test(name)) {
    throw new ImageError(
      `Cannot use image name "${name}": use 1–63 of a-z, 0-9 and "-", not starting or ending with "-"`,
      {
        code: "invalid_argument",
      },
    );
  }
}

function taken(name: string): ImageError {
  return new ImageError(`Cannot create image "${name}": an image with that name exists`, {
    code: "conflict",
    hint: `banger image delete ${name}`,
  });
}

async function fileSize(path: string, what: string): Promise<number> {
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new Error("not a regular file");
    return info.size;
  } catch (err) {
    throw new ImageError(`Cannot use ${what} "${path}": ${errorMessage(err)}`, {
      code: "invalid_argument",
    });
  }
}

/** A random 16-hex-digit id. */
export function randomId(): string {
  return [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}
