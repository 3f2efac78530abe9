/**
 * Wire API of images and kernels.
 *
 * @module
 */

import * as s from "../../host/schema.ts";
import { method } from "./protocol.ts";

const name = s.string({ min: 1, max: 63, expected: "a name" });

/** An image as the CLI sees it. */
export const imageView = s.object({
  id: s.string(),
  name: s.string(),
  rootfs: s.string(),
  size_bytes: s.number(),
  kernel: s.string(),
  source: s.string(),
  managed: s.boolean(),
  guest_pieces: s.boolean(),
  description: s.optional(s.string()),
  created_at: s.string(),
  used_by: s.array(s.string()),
});
/** An image as the CLI sees it. */
export type ImageView = s.Infer<typeof imageView>;

/** `image.pull` (streams download progress): a catalog name or an OCI reference. */
export const imagePull = method(
  "image.pull",
  s.object({
    source: s.string({ min: 1, max: 512 }),
    name: s.optional(name),
    kernel_ref: s.optional(name),
    size: s.optional(s.string({ min: 1, max: 32 })),
  }),
  s.object({ image: imageView, already: s.boolean() }),
  { stream: true },
);

/** `image.list`. */
export const imageList = method(
  "image.list",
  s.object({ available: s.optional(s.boolean()) }),
  s.object({
    images: s.array(imageView),
    available: s.array(
      s.object({ name: s.string(), description: s.string(), pulled: s.boolean() }),
    ),
  }),
);

/** `image.show`. */
export const imageShow = method("image.show", s.object({ name }), imageView);

/** `image.delete`: refused while a VM uses the image. */
export const imageDelete = method(
  "image.delete",
  s.object({ name }),
  s.object({ name: s.string() }),
);

/** `image.register`: use an existing rootfs in place (unmanaged). */
export const imageRegister = method(
  "image.register",
  s.object({
    name,
    rootfs: s.string({ min: 1 }),
    kernel_ref: s.optional(name),
    kernel: s.optional(s.string({ min: 1 })),
    initrd: s.optional(s.string({ min: 1 })),
  }),
  imageView,
);

/** `image.promote`: copy a registered image's files into banger's managed store. */
export const imagePromote = method("image.promote", s.object({ name }), imageView, {
  stream: true,
});

/** `image.cache.prune`: drop cached OCI blobs and stale staging directories. */
export const imageCachePrune = method(
  "image.cache.prune",
  s.object({ dry_run: s.optional(s.boolean()) }),
  s.object({ dir: s.string(), files: s.number({ int: true }), bytes: s.number({ int: true }) }),
);

/** A kernel as the CLI sees it. */
export const kernelView = s.object({
  name: s.string(),
  version: s.string(),
  arch: s.string(),
  vmlinux: s.string(),
  initrd: s.optional(s.string()),
  source: s.string(),
  sha256: s.string(),
  created_at: s.string(),
  used_by: s.array(s.string()),
});
/** A kernel as the CLI sees it. */
export type KernelView = s.Infer<typeof kernelView>;

/** `kernel.pull` (streams progress). */
export const kernelPull = method(
  "kernel.pull",
  s.object({ name }),
  s.object({ kernel: kernelView, already: s.boolean() }),
  { stream: true },
);

/** `kernel.list`. */
export const kernelList = method(
  "kernel.list",
  s.object({ available: s.optional(s.boolean()) }),
  s.object({
    kernels: s.array(kernelView),
    available: s.array(
      s.object({ name: s.string(), description: s.string(), pulled: s.boolean() }),
    ),
  }),
);

/** `kernel.show`. */
export const kernelShow = method("kernel.show", s.object({ name }), kernelView);

/** `kernel.rm`: refused while an image uses the kernel. */
export const kernelRemove = method("kernel.rm", s.object({ name }), s.object({ name: s.string() }));

/** `kernel.import`: publish a kernel from a directory holding `vmlinux` (+ `initrd.img`). */
export const kernelImport = method(
  "kernel.import",
  s.object({ name, from: s.string({ min: 1 }) }),
  kernelView,
);
