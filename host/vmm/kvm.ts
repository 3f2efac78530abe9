/**
 * Whether this host's KVM can run a standard guest. `/dev/kvm` alone is not enough: a
 * nested "PVM" KVM (module `kvm_pvm`) exposes `/dev/kvm` but only runs PVM-patched guest
 * kernels, and a CPU without `vmx`/`svm` offers no hardware virtualisation at all.
 *
 * Pure: the facts come from `PrivilegedOps.probeHost` (the owner daemon cannot read `/dev`,
 * `/proc` or `/sys` itself), gathered by the in-process adapter's `_host_probe.ts`.
 *
 * @module
 */

/** Whether KVM can run standard guests, from {@linkcode classifyKvm}. */
export interface KvmStatus {
  /** `/dev/kvm` exists. */
  present: boolean;
  /** It can be opened read-write by the user VMMs run as. */
  accessible: boolean;
  /** A standard (unmodified) guest kernel can run on it. */
  usable: boolean;
  /** Why it is not usable, in words a user can act on. */
  reason?: string;
}

/** Facts {@linkcode classifyKvm} decides from (plain data: it crosses the helper socket). */
export interface KvmFacts {
  /** `/dev/kvm` exists. */
  present: boolean;
  /** The VMM user can open it read-write (its mode, owner and group allow it). */
  accessible: boolean;
  /** Why it cannot, e.g. `mode 0660 root:kvm, and uid 1000 is not in group kvm`. */
  openError?: string;
  /** The CPU's flags (`vmx`/`svm` mean hardware virtualisation). */
  cpuFlags: string[];
  /** `/sys/module/kvm_pvm` exists: `/dev/kvm` is nested PVM. */
  pvmModuleLoaded: boolean;
}

/**
 * Whether a standard guest can run on this host's KVM, and why not. Pure.
 *
 * @example
 * ```ts
 * classifyKvm((await ops.probeHost({})).kvm).usable;
 * ```
 */
export function classifyKvm(f: KvmFacts): KvmStatus {
  const base = { present: f.present, accessible: f.accessible };
  if (!f.present) return { ...base, usable: false, reason: "/dev/kvm does not exist" };
  if (!f.accessible) {
    return { ...base, usable: false, reason: `cannot open /dev/kvm: ${f.openError ?? "denied"}` };
  }
  if (f.pvmModuleLoaded) {
    return {
      ...base,
      usable: false,
      reason: "/dev/kvm is nested PVM (kvm_pvm), which only runs PVM-patched guest kernels",
    };
  }
  if (!f.cpuFlags.includes("vmx") && !f.cpuFlags.includes("svm")) {
    return { ...base, usable: false, reason: "the CPU offers no vmx/svm virtualisation" };
  }
  return { ...base, usable: true };
}

/**
 * The CPU flags of the first processor in `/proc/cpuinfo` text. Pure.
 *
 * @example
 * ```ts
 * cpuFlags("flags\t\t: fpu vme vmx\n"); // ["fpu", "vme", "vmx"]
 * ```
 */
export function cpuFlags(cpuinfo: string): string[] {
  const line = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? "";
  return line.trim().split(/\s+/).filter(Boolean);
}

/**
 * The host CPU's clock in kHz from `/proc/cpuinfo` text (for QEMU's `tsc_early_khz`). Pure.
 *
 * @returns `undefined` when no `cpu MHz` line is there.
 * @example
 * ```ts
 * cpuKhz("cpu MHz\t\t: 2399.998\n"); // 2399998
 * ```
 */
export function cpuKhz(cpuinfo: string): number | undefined {
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]);
  return Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz * 1000) : undefined;
}
