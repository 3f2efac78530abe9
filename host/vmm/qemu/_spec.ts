/**
 * The QEMU VM spec and its checks (folder-private part of `host/vmm/qemu/qemu.ts`, which exports
 * the type).
 *
 * @module
 */

import { UNIX_PATH_MAX } from "../../layout.ts";

/** What to run. All paths absolute. */
export interface QemuVmSpec {
  /** `kvm` only when KVM can run a standard guest. */
  accel: "kvm" | "tcg";
  /** Virtual CPUs. */
  vcpus: number;
  /** Guest memory in MiB. */
  memoryMib: number;
  /** ELF `vmlinux` (booted through PVH) or bzImage. */
  kernelPath: string;
  /** The banger initrd. */
  initrdPath: string;
  /** Full kernel command line (`host/vmm/kernel_cmdline.ts`). */
  cmdline: string;
  /** Root disk image, the guest's `/dev/vda` (read-write). */
  rootDiskPath: string;
  /** Work disk image, the guest's `/dev/vdb`. */
  workDiskPath?: string;
  /** Host tap for the guest NIC, with the guest MAC. */
  tap?: { name: string; mac: string };
  /** Guest CID; set only when `/dev/vhost-vsock` exists. */
  vsockCid?: number;
  /** Serial console log (appended). */
  serialLogPath: string;
  /** QMP monitor unix socket. */
  monitorSocketPath: string;
  /** Where QEMU writes its pid. */
  pidFilePath: string;
}

/** What is wrong with `spec` for QEMU's option syntax, or `undefined`. Pure. */
export function specProblem(spec: QemuVmSpec): string | undefined {
  const paths: [string, string | undefined][] = [
    ["kernel", spec.kernelPath],
    ["initrd", spec.initrdPath],
    ["root disk", spec.rootDiskPath],
    ["work disk", spec.workDiskPath],
    ["serial log", spec.serialLogPath],
    ["monitor socket", spec.monitorSocketPath],
    ["pid file", spec.pidFilePath],
  ];
  for (const [what, path] of paths) {
    if (path === undefined) continue;
    // deno-lint-ignore no-control-regex
    if (!path.startsWith("/") || /[,\x00-\x1f\x7f]/.test(path)) {
      return `${what} path "${path}" must be absolute, without commas or control characters`;
    }
  }
  if (new TextEncoder().encode(spec.monitorSocketPath).length >= UNIX_PATH_MAX) {
    return `monitor socket path "${spec.monitorSocketPath}" is longer than 107 bytes`;
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(spec.cmdline)) return "the kernel command line has a newline";
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) return `vcpus must be ≥ 1`;
  if (!Number.isInteger(spec.memoryMib) || spec.memoryMib < 64) {
    return `memory must be at least 64 MiB`;
  }
  if (spec.tap) {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(spec.tap.name)) {
      return `tap name "${spec.tap.name}" must be 1-15 of A-Z, a-z, 0-9, '_', '.', '-'`;
    }
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(spec.tap.mac)) {
      return `MAC "${spec.tap.mac}" must be six lowercase hex pairs`;
    }
  }
  if (spec.vsockCid !== undefined && (!Number.isInteger(spec.vsockCid) || spec.vsockCid < 3)) {
    return `vsock CID ${spec.vsockCid} must be an integer ≥ 3`;
  }
  return undefined;
}
