/**
 * The smoke suite's catalog mirror content: the golden image and the Debian kernel
 * (built once per machine by `tests/fixtures/guest_artifacts.ts`) packed as catalog
 * bundles, plus `images.json`/`kernels.json` pointing at them. Cached next to the
 * artifacts, keyed by their directory names, so later runs only copy.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { guestArtifacts, guestCacheDir } from "../tests/fixtures/guest_artifacts.ts";

/** Names the mirror offers. */
export const SMOKE_IMAGE = "debian-bookworm";
/** A second catalog name for the same bundle, never pulled before the pull-once scenario. */
export const SMOKE_IMAGE_FRESH = "debian-fresh";
/** The kernel's catalog name. */
export const SMOKE_KERNEL = "debian-6.1-cloud";

/** A bundle file and its catalog fields. */
interface Bundle {
  path: string;
  sha256: string;
  size: number;
}

/** Where the mirror's files are: serve this directory. */
export interface MirrorContent {
  dir: string;
  image: Bundle;
  kernel: Bundle;
}

/**
 * Builds (or reuses) the bundles and writes a mirror directory with both catalogs.
 *
 * @param dir an empty directory to fill (the catalogs reference `image.tar.zst` and
 *   `kernel.tar.gz` relative to the mirror's URL).
 */
export async function prepareMirror(dir: string): Promise<MirrorContent> {
  const art = await guestArtifacts();
  const cache = `${guestCacheDir()}/bundles`;
  await Deno.mkdir(cache, { recursive: true });
  const imageKey = art.imageDir.split("/").pop() ?? "image";
  const kernelKey = art.kernelDir.split("/").pop() ?? "kernel";
  const image = await cachedBundle(`${cache}/${imageKey}.tar.zst`, art.imageDir, [
    "rootfs.ext4",
    "manifest.json",
  ], ["zstd", "-T0", "-3", "-q"]);
  const kernel = await cachedBundle(`${cache}/${kernelKey}.tar.gz`, art.kernelDir, [
    "vmlinux",
    "initrd.img",
  ], ["gzip", "-1"]);
  await Deno.mkdir(dir, { recursive: true });
  await Deno.link(image.path, `${dir}/image.tar.zst`).catch(() =>
    Deno.copyFile(image.path, `${dir}/image.tar.zst`)
  );
  await Deno.link(kernel.path, `${dir}/kernel.tar.gz`).catch(() =>
    Deno.copyFile(kernel.path, `${dir}/kernel.tar.gz`)
  );
  const imageEntry = (name: string) => ({
    name,
    arch: "x86_64",
    description: "Debian 12 golden image (smoke mirror)",
    kernel_ref: SMOKE_KERNEL,
    bundle: { url: "image.tar.zst", sha256: image.sha256, size: image.size },
  });
  await Deno.writeTextFile(
    `${dir}/images.json`,
    JSON.stringify({
      version: 1,
      images: [imageEntry(SMOKE_IMAGE), imageEntry(SMOKE_IMAGE_FRESH)],
    }),
  );
  await Deno.writeTextFile(
    `${dir}/kernels.json`,
    JSON.stringify({
      version: 1,
      kernels: [{
        name: SMOKE_KERNEL,
        arch: "x86_64",
        description: "Debian cloud kernel (smoke mirror)",
        bundle: { url: "kernel.tar.gz", sha256: kernel.sha256, size: kernel.size },
      }],
    }),
  );
  return { dir, image, kernel };
}

async function cachedBundle(
  path: string,
  from: string,
  files: string[],
  compress: string[],
): Promise<Bundle> {
  try {
    const meta = JSON.parse(await Deno.readTextFile(`${path}.json`)) as Bundle;
    if ((await Deno.stat(path)).size === meta.size) return meta;
  } catch {
    // not built yet
  }
  const tmp = `${path}.tmp-${Deno.pid}`;
  // tar | compressor > tmp, hashed afterwards; only the finished file is renamed in.
  const tar = new Deno.Command("tar", { args: ["-C", from, "-cf", "-", ...files], stdout: "piped" })
    .spawn();
  const out = await Deno.open(tmp, { write: true, create: true, truncate: true });
  const zip = new Deno.Command(compress[0], {
    args: compress.slice(1),
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  await Promise.all([tar.stdout.pipeTo(zip.stdin), zip.stdout.pipeTo(out.writable)]);
  if (!(await tar.status).success || !(await zip.status).success) {
    throw new Error(`Cannot build bundle ${path}`);
  }
  const hash = createHash("sha256");
  for await (const chunk of (await Deno.open(tmp)).readable) hash.update(chunk);
  const meta: Bundle = { path, sha256: hash.digest("hex"), size: (await Deno.stat(tmp)).size };
  await Deno.rename(tmp, path);
  await Deno.writeTextFile(`${path}.json`, JSON.stringify(meta));
  return meta;
}
