/**
 * Fetches Debian's cloud kernel package and unpacks it for the kernel build: the
 * compressed kernel (`boot/vmlinuz-<release>`) and its modules (`lib/modules/<release>`).
 *
 * `linux-image-cloud-amd64` is a meta package; its `Depends:` names the real one
 * (`linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)`), which is fetched at exactly that
 * version. Asking for a real package directly works too. Both go through
 * {@linkcode fetchDebianPackage}: the host's apt configuration and mirror, verified
 * downloads, a cache, and never an install on the host.
 *
 * @module
 */

import { BangerError } from "../../host/errors.ts";
import { type DebianPackage, fetchDebianPackage, unpackDebianPackage } from "./debian_package.ts";

/** A kernel package that does not contain what banger needs. */
export class DebianKernelError extends BangerError {}

/** The default kernel package: Debian's cloud flavour (virtio, no hardware drivers). */
export const DEFAULT_KERNEL_PACKAGE = "linux-image-cloud-amd64";

/** An unpacked Debian kernel package. */
export interface DebianKernel {
  /** Kernel release, e.g. `6.1.0-56-cloud-amd64`. */
  release: string;
  /** The real (non-meta) package that was unpacked. */
  package: DebianPackage;
  /** The compressed kernel, `<unpackDir>/boot/vmlinuz-<release>`. */
  vmlinuzPath: string;
  /** `<unpackDir>/lib/modules/<release>`. */
  modulesDir: string;
}

/** Options for {@linkcode fetchDebianKernel}. */
export interface FetchDebianKernelOptions {
  /** Cache root for downloaded `.deb` files. */
  cacheDir: string;
  /** Where to unpack the kernel package (created; about 110 MB). */
  unpackDir: string;
  /** Package to start from. @default {"linux-image-cloud-amd64"} */
  packageName?: string;
  /** Stops apt-get and dpkg-deb when aborted. */
  signal?: AbortSignal;
}

/**
 * Fetches (or reuses from the cache) and unpacks the kernel package.
 *
 * @throws {DebianPackageError} when apt cannot fetch a package.
 * @throws {DebianKernelError} when the package holds no `boot/vmlinuz-*` or no modules.
 * @example
 * ```ts
 * const kernel = await fetchDebianKernel({ cacheDir: "/var/cache/b", unpackDir: "/tmp/k" });
 * kernel.release; // "6.1.0-56-cloud-amd64"
 * ```
 */
export async function fetchDebianKernel(options: FetchDebianKernelOptions): Promise<DebianKernel> {
  const fetchOptions = { cacheDir: options.cacheDir, signal: options.signal };
  const first = await fetchDebianPackage(
    options.packageName ?? DEFAULT_KERNEL_PACKAGE,
    fetchOptions,
  );
  const real = realKernelDependency(first.depends);
  const pkg = real ? await fetchDebianPackage(real, fetchOptions) : first;
  await unpackDebianPackage(pkg.debPath, options.unpackDir, options.signal);
  const boot = `${options.unpackDir}/boot`;
  const kernels: string[] = [];
  try {
    for await (const entry of Deno.readDir(boot)) {
      if (entry.isFile && entry.name.startsWith("vmlinuz-")) kernels.push(entry.name);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  if (kernels.length !== 1) {
    throw new DebianKernelError(
      `Cannot use package "${pkg.name}" as a kernel: it has ${
        kernels.length === 0 ? "no" : `${kernels.length}`
      } boot/vmlinuz-* files`,
      { code: "failed_precondition", hint: `use ${DEFAULT_KERNEL_PACKAGE}` },
    );
  }
  const release = kernels[0].slice("vmlinuz-".length);
  const modulesDir = `${options.unpackDir}/lib/modules/${release}`;
  try {
    await Deno.stat(modulesDir);
  } catch {
    throw new DebianKernelError(
      `Cannot use package "${pkg.name}" as a kernel: it has no lib/modules/${release}`,
      { code: "failed_precondition" },
    );
  }
  return { release, package: pkg, vmlinuzPath: `${boot}/${kernels[0]}`, modulesDir };
}

/**
 * The `name=version` of the kernel image a meta package depends on, from its `Depends:`
 * field, or `undefined` when it names none (it is the real package). Pure.
 */
export function realKernelDependency(depends: string): string | undefined {
  for (const alternative of depends.split(/[,|]/)) {
    const m = /^\s*(linux-image-\d[a-z0-9.+-]*)\s*(?:\(\s*=\s*([^)\s]+)\s*\))?\s*$/.exec(
      alternative,
    );
    if (m) return m[2] ? `${m[1]}=${m[2]}` : m[1];
  }
  return undefined;
}
