/**
 * Store records → the wire views the CLI prints. Pure.
 *
 * @module
 */

import type { ImageView, KernelView } from "../api/image.ts";
import type { VmView } from "../api/vm.ts";
import type { ImageRecord } from "../../store/images.ts";
import type { KernelRecord } from "../../store/kernels.ts";
import type { VmRecord } from "../../store/vms.ts";

/** An image for the CLI. */
export function imageView(image: ImageRecord, usedBy: string[]): ImageView {
  const s = image.source;
  const source = s.kind === "oci"
    ? `oci ${s.ref}`
    : s.kind === "catalog"
    ? `catalog ${s.url}`
    : s.kind === "golden"
    ? `recipe ${s.recipe}`
    : s.kind === "promote"
    ? `promoted from ${s.from}`
    : "registered";
  return {
    id: image.id,
    name: image.name,
    rootfs: image.rootfs,
    size_bytes: image.sizeBytes,
    kernel: image.kernelName ?? image.kernelFiles?.vmlinux ?? "",
    source,
    managed: image.dir !== undefined,
    guest_pieces: image.hasGuestPieces,
    ...(image.description ? { description: image.description } : {}),
    created_at: image.createdAt,
    used_by: usedBy,
  };
}

/** A kernel for the CLI. */
export function kernelView(k: KernelRecord, usedBy: string[]): KernelView {
  const s = k.source;
  const source = s.kind === "debian"
    ? `debian ${s.package} ${s.version}`
    : s.kind === "catalog"
    ? `catalog ${s.url}`
    : `imported from ${s.from}`;
  return {
    name: k.name,
    version: k.version,
    arch: k.arch,
    vmlinux: k.vmlinux,
    ...(k.initrd ? { initrd: k.initrd } : {}),
    source,
    sha256: k.sha256,
    created_at: k.createdAt,
    used_by: usedBy,
  };
}

/** A VM for the CLI; `errors` explains a `broken` status. */
export function vmView(vm: VmRecord, imageName: string, errors: string[] = []): VmView {
  const r = vm.runtime;
  const w = vm.workspace;
  return {
    id: vm.id,
    name: vm.name,
    status: errors.length ? "broken" : vm.status,
    image: imageName,
    guest_ip: vm.guestIp,
    dns_name: r.dnsName,
    vcpu: vm.spec.vcpu,
    memory_mib: vm.spec.memoryMib,
    disk_bytes: vm.spec.diskBytes,
    overlay_bytes: vm.spec.overlayBytes,
    nat: vm.spec.nat,
    vmm: vm.spec.vmm,
    created_at: vm.createdAt,
    ...(r.startedAt ? { started_at: r.startedAt } : {}),
    ...(r.pid !== undefined ? { pid: r.pid } : {}),
    ...(r.tap ? { tap: r.tap } : {}),
    ...(w
      ? {
        workspace: {
          guest_path: w.guestPath,
          host_path: w.hostPath,
          base_commit: w.baseCommit,
          host_head: w.hostHead,
          mode: w.mode,
          readonly: w.readonly,
          prepared_at: w.preparedAt,
        },
      }
      : {}),
    ...(r.lastError
      ? { last_error: { step: r.lastError.step, message: r.lastError.message, at: r.lastError.at } }
      : {}),
    errors,
  };
}
