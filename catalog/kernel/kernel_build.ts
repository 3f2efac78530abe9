/**
 * Builds a banger kernel directory from Debian's archive:
 *
 * ```
 * <outDir>/vmlinux        ELF kernel (Firecracker; QEMU boots it through PVH)
 * <outDir>/initrd.img     busybox + virtio/vsock modules, see initrd.ts
 * <outDir>/manifest.json  {name, version, source, arch, sha256, created_at}
 * ```
 *
 * Steps: fetch and unpack the kernel package (`debian_kernel.ts`), extract `vmlinux`
 * from its bzImage (`extract_vmlinux.ts`), fetch `busybox-static` the same way (so the
 * host needs no busybox), build the initrd from the package's own modules, and write all
 * three files atomically. `outDir` is meant to be a staging directory that the caller
 * publishes by renaming (DESIGN.md invariant 3); scratch files go in a temporary
 * directory under `cacheDir` and are removed.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { writeFileAtomic, writeJsonAtomic } from "../../host/os/atomic_file.ts";
import { BangerError } from "../../host/errors.ts";
import { literal, object, type ObjectOf, type Schema, string as str } from "../../host/schema.ts";
import { fetchDebianKernel } from "./debian_kernel.ts";
import { fetchDebianPackage, unpackDebianPackage } from "./debian_package.ts";
import { extractVmlinux } from "./extract_vmlinux.ts";
import { buildInitrd } from "./initrd.ts";

/** A kernel directory that cannot be built. */
export class KernelBuildError extends BangerError {}

const KERNEL_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const manifestShape = {
  name: str({ pattern: KERNEL_NAME, expected: "a kernel name" }),
  version: str({ min: 1 }),
  source: object({
    kind: literal("debian"),
    package: str({ min: 1 }),
    version: str({ min: 1 }),
  }),
  arch: literal("x86_64"),
  sha256: str({ pattern: /^[0-9a-f]{64}$/, expected: "64 lowercase hex digits" }),
  created_at: str({ min: 1 }),
};

/** `manifest.json` of a kernel directory. */
export type KernelManifest = ObjectOf<typeof manifestShape>;

/** Parses a kernel `manifest.json` body; rejects unknown fields. */
export const kernelManifestSchema: Schema<KernelManifest> = object(manifestShape);

/** Options for {@linkcode buildKernel}. */
export interface BuildKernelOptions {
  /** The kernel's name in banger, e.g. `debian-6.1-cloud`. */
  name: string;
  /** Directory to fill (created if missing). */
  outDir: string;
  /** Cache root: downloaded `.deb` files and scratch space. */
  cacheDir: string;
  /** Kernel package to start from. @default {"linux-image-cloud-amd64"} */
  packageName?: string;
  /** A static busybox to use instead of fetching `busybox-static`. */
  busyboxPath?: string;
  /** Stops the build when aborted. */
  signal?: AbortSignal;
  /** Clock for `created_at`. @default {() => new Date()} */
  now?: () => Date;
}

/**
 * Builds `vmlinux`, `initrd.img` and `manifest.json` into `outDir`.
 *
 * @throws {KernelBuildError} for an invalid name.
 * @throws {DebianPackageError} / {DebianKernelError} / {KernelImageError} / {InitrdError}
 *   from the steps, each naming what failed.
 * @example
 * ```ts
 * const manifest = await buildKernel({
 *   name: "debian-6.1-cloud",
 *   outDir: "/state/kernels/.staging-123",
 *   cacheDir: "/cache/banger/build",
 * });
 * manifest.version; // "6.1.0-56-cloud-amd64"
 * ```
 */
export async function buildKernel(options: BuildKernelOptions): Promise<KernelManifest> {
  if (!KERNEL_NAME.test(options.name)) {
    throw new KernelBuildError(`Cannot build kernel "${options.name}": not a valid kernel name`, {
      code: "invalid_argument",
      hint: "use 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
    });
  }
  await Deno.mkdir(options.cacheDir, { recursive: true });
  const scratch = await Deno.makeTempDir({ dir: options.cacheDir, prefix: ".kernel-build-" });
  try {
    const kernel = await fetchDebianKernel({
      cacheDir: options.cacheDir,
      unpackDir: `${scratch}/kernel`,
      packageName: options.packageName,
      signal: options.signal,
    });
    const { vmlinux } = extractVmlinux(await Deno.readFile(kernel.vmlinuzPath));
    const busybox = await readBusybox(options, scratch);
    const initrd = await buildInitrd({ busybox, modulesDir: kernel.modulesDir });
    await Deno.mkdir(options.outDir, { recursive: true });
    await writeFileAtomic(`${options.outDir}/vmlinux`, vmlinux, { mode: 0o644 });
    await writeFileAtomic(`${options.outDir}/initrd.img`, initrd.image, { mode: 0o644 });
    const manifest: KernelManifest = {
      name: options.name,
      version: kernel.release,
      source: { kind: "debian", package: kernel.package.name, version: kernel.package.version },
      arch: "x86_64",
      sha256: sha256Hex(vmlinux),
      created_at: (options.now ?? (() => new Date()))().toISOString(),
    };
    await writeJsonAtomic(`${options.outDir}/manifest.json`, manifest, { mode: 0o644 });
    return manifest;
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

async function readBusybox(options: BuildKernelOptions, scratch: string): Promise<Uint8Array> {
  if (options.busyboxPath) return await Deno.readFile(options.busyboxPath);
  const pkg = await fetchDebianPackage("busybox-static", {
    cacheDir: options.cacheDir,
    signal: options.signal,
  });
  await unpackDebianPackage(pkg.debPath, `${scratch}/busybox`, options.signal);
  return await Deno.readFile(`${scratch}/busybox/bin/busybox`);
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
