/**
 * Whether this host's KVM can run a standard guest. `/dev/kvm` alone is not enough: a
 * nested "PVM" KVM (module `kvm_pvm`) exposes `/dev/kvm` but only runs PVM-patched guest
 * kernels, and a CPU without `vmx`/`svm` offers no hardware virtualisation at all.
 *
 * @module
 */

import { Fd, LibcError, O_CLOEXEC, O_RDWR, pathExists } from "./libc.ts";
import { readProcFileIfExists } from "./procfs.ts";

/** What {@linkcode probeKvm} found. */
export interface KvmStatus {
  /** `/dev/kvm` exists. */
  present: boolean;
  /** It can be opened read-write by this process. */
  accessible: boolean;
  /** A standard (unmodified) guest kernel can run on it. */
  usable: boolean;
  /** Why it is not usable, in words a user can act on. */
  reason?: string;
}

/** Facts {@linkcode classifyKvm} decides from; gathered by {@linkcode probeKvm}. */
export interface KvmFacts {
  present: boolean;
  accessible: boolean;
  openError?: string;
  cpuFlags: string[];
  pvmModuleLoaded: boolean;
}

/** Pure decision behind {@linkcode probeKvm}. */
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
 * Probes `/dev/kvm`, the CPU flags and the loaded KVM modules.
 *
 * @example
 * ```ts
 * const kvm = probeKvm();
 * if (!kvm.usable) console.log(`software emulation: ${kvm.reason}`);
 * ```
 */
export function probeKvm(): KvmStatus {
  const present = pathExists("/dev/kvm");
  let accessible = false;
  let openError: string | undefined;
  if (present) {
    try {
      Fd.open("/dev/kvm", O_RDWR | O_CLOEXEC, "open").close();
      accessible = true;
    } catch (err) {
      if (!(err instanceof LibcError)) throw err;
      openError = err.message;
    }
  }
  const cpuinfo = readProcFileIfExists("/proc/cpuinfo") ?? "";
  const flagsLine = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? "";
  return classifyKvm({
    present,
    accessible,
    openError,
    cpuFlags: flagsLine.trim().split(/\s+/),
    pvmModuleLoaded: pathExists("/sys/module/kvm_pvm"),
  });
}

/** The host CPU's clock in kHz from /proc/cpuinfo (for QEMU's `tsc_early_khz`). */
export function cpuKhz(): number | undefined {
  const cpuinfo = readProcFileIfExists("/proc/cpuinfo") ?? "";
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]);
  return Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz * 1000) : undefined;
}
