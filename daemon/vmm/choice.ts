/**
 * Which VMM boots guests on this host: `vmm = "auto"` picks Firecracker when a supported
 * release of it and a usable KVM are present, QEMU otherwise; an explicit choice is
 * honoured (and fails at start with a clear error when its requirements are missing).
 *
 * @module
 */

import type { KvmStatus } from "../../host/vmm/kvm.ts";
import { type FirecrackerProbe, firecrackerProblem } from "../../host/vmm/firecracker/version.ts";
import type { VmmChoice } from "../config.ts";

/** The VMM that will run guests, and why. */
export interface VmmDecision {
  vmm: "firecracker" | "qemu";
  /** One line for the spec line and doctor, e.g. "qemu (software emulation: …)". */
  reason: string;
  /** Whether QEMU may use KVM (`-accel kvm`) or must emulate (`-accel tcg`). */
  accel: "kvm" | "tcg";
}

/** Decides the VMM from the config choice and what the host offers. Pure. */
export function chooseVmm(
  choice: VmmChoice,
  host: { kvm: KvmStatus; firecracker: FirecrackerProbe },
): VmmDecision {
  const accel = host.kvm.usable ? "kvm" : "tcg";
  const qemuReason = host.kvm.usable
    ? "qemu with KVM"
    : `qemu with software emulation (${host.kvm.reason ?? "no usable KVM"})`;
  if (choice === "qemu") return { vmm: "qemu", accel, reason: `${qemuReason}; vmm = "qemu"` };
  if (choice === "firecracker") {
    return { vmm: "firecracker", accel: "kvm", reason: `firecracker; vmm = "firecracker"` };
  }
  const problem = firecrackerProblem(host.firecracker);
  if (!problem && host.firecracker.found && host.kvm.usable) {
    const { path, version } = host.firecracker;
    return { vmm: "firecracker", accel: "kvm", reason: `firecracker v${version} (${path})` };
  }
  return { vmm: "qemu", accel, reason: `${qemuReason}; ${problem ?? "no usable KVM"}` };
}
