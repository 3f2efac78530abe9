/**
 * Renders a VM spec into the ordered Firecracker API calls that configure and boot it,
 * and into the equivalent `--config-file` JSON. Pure: no I/O; applying the calls is
 * `host/vmm/firecracker/firecracker.ts`'s job.
 *
 * @module
 */

import { vmFiles } from "../../layout.ts";
import { guestMac } from "../../net/ipv4.ts";
import { FirecrackerError } from "./api.ts";
import type {
  ActionType,
  BootSource,
  Drive,
  Logger,
  LogLevel,
  MachineConfiguration,
  Metrics,
  NetworkInterface,
  Vsock,
} from "./types.ts";

/**
 * Longest caller command line accepted. Firecracker's limit is 2048 bytes including what it
 * appends itself (`root=/dev/vda rw` and one `virtio_mmio.device=` per device), so 256 bytes
 * are left for those.
 */
export const MAX_BOOT_ARGS_BYTES = 2048 - 256;

/** Drive and interface ids banger uses. */
export const FIRECRACKER_IDS = { rootDrive: "rootfs", workDrive: "work", iface: "eth0" } as const;

/** What one VM looks like to Firecracker. */
export interface FirecrackerVmSpec {
  /** Absolute per-VM directory; the log, metrics and vsock socket live in it. */
  vmDir: string;
  /** Absolute path of the guest kernel (ELF vmlinux on x86_64). */
  kernelPath: string;
  /** Absolute path of the initrd, if the kernel needs one. */
  initrdPath?: string;
  /**
   * The final kernel command line (`renderKernelCmdline` in `host/vmm/kernel_cmdline.ts`).
   * Must not contain `root=`: Firecracker appends it for the root drive.
   */
  bootArgs: string;
  /** The root disk (`/dev/vda`): a device node or an image file. */
  rootDisk: string;
  /** Open the root disk read-only. @default {false} */
  rootReadOnly?: boolean;
  /** The work disk (`/dev/vdb`), if any. */
  workDisk?: string;
  /** The tap and the guest address the MAC is derived from, if networked. */
  network?: { tapName: string; guestIp: number };
  /** 1–32. */
  vcpuCount: number;
  /** Guest memory in MiB, at least 1. */
  memSizeMib: number;
  /** The guest's vsock CID (at least 3); no vsock device when absent. */
  vsockCid?: number;
  /** Firecracker's log level. @default {"Info"} */
  logLevel?: LogLevel;
}

/** One API call, tagged with the client method that sends it. */
export type FirecrackerApiCall =
  | { resource: "logger"; method: "PUT"; path: string; body: Logger }
  | { resource: "metrics"; method: "PUT"; path: string; body: Metrics }
  | { resource: "boot-source"; method: "PUT"; path: string; body: BootSource }
  | { resource: "drive"; method: "PUT"; path: string; body: Drive }
  | { resource: "network-interface"; method: "PUT"; path: string; body: NetworkInterface }
  | { resource: "machine-config"; method: "PUT"; path: string; body: MachineConfiguration }
  | { resource: "vsock"; method: "PUT"; path: string; body: Vsock }
  | { resource: "action"; method: "PUT"; path: string; body: { action_type: ActionType } };

/** The `--config-file` document (kebab-case keys, bodies as in the API). */
export interface FirecrackerConfigFile {
  "boot-source": BootSource;
  drives: Drive[];
  "machine-config": MachineConfiguration;
  "network-interfaces": NetworkInterface[];
  vsock?: Vsock;
  logger: Logger;
  metrics: Metrics;
}

/** The result of {@linkcode renderFirecrackerConfig}. */
export interface RenderedFirecrackerConfig {
  /** In order; the last one is `PUT /actions {"action_type":"InstanceStart"}`. */
  calls: FirecrackerApiCall[];
  /** The same configuration as one `--config-file` (which boots on its own). */
  configFile: FirecrackerConfigFile;
}

const UNIX_PATH_MAX = 108;
// `<uds_path>_<port>` is where Firecracker forwards guest-initiated vsock connections.
const VSOCK_PORT_SUFFIX = "_4294967295".length;

/**
 * Renders the calls that configure and start `spec`, and the equivalent config file.
 * Drives are `Writeback`, as under QEMU: Firecracker's default (`Unsafe`) offers the guest
 * no flush, so a guest `fsync` would never reach the host's disk.
 *
 * @throws {FirecrackerError} (`invalid_argument`) when a value would be rejected by
 *   Firecracker or could inject text: relative paths, control characters, a `root=` or
 *   oversized command line, out-of-range sizes, a bad tap name, socket paths too long.
 * @example
 * ```ts
 * const { calls } = renderFirecrackerConfig({
 *   vmDir: "/state/vms/abc", kernelPath: "/k/vmlinux", bootArgs: "console=ttyS0 reboot=k panic=1",
 *   rootDisk: "/dev/dm-3", vcpuCount: 2, memSizeMib: 1024,
 * });
 * calls.map((c) => c.path); // ["/logger", "/metrics", "/boot-source", "/drives/rootfs", ...]
 * ```
 */
export function renderFirecrackerConfig(spec: FirecrackerVmSpec): RenderedFirecrackerConfig {
  checkSpec(spec);
  const logger: Logger = {
    log_path: `${spec.vmDir}/${vmFiles.vmmLog}`,
    level: spec.logLevel ?? "Info",
    show_level: true,
    show_log_origin: false,
  };
  const metrics: Metrics = { metrics_path: `${spec.vmDir}/${vmFiles.metrics}` };
  const bootSource: BootSource = { kernel_image_path: spec.kernelPath };
  if (spec.initrdPath !== undefined) bootSource.initrd_path = spec.initrdPath;
  bootSource.boot_args = spec.bootArgs;
  const drives: Drive[] = [{
    drive_id: FIRECRACKER_IDS.rootDrive,
    path_on_host: spec.rootDisk,
    is_root_device: true,
    is_read_only: spec.rootReadOnly ?? false,
    cache_type: "Writeback",
  }];
  if (spec.workDisk !== undefined) {
    drives.push({
      drive_id: FIRECRACKER_IDS.workDrive,
      path_on_host: spec.workDisk,
      is_root_device: false,
      is_read_only: false,
      cache_type: "Writeback",
    });
  }
  const ifaces: NetworkInterface[] = spec.network
    ? [{
      iface_id: FIRECRACKER_IDS.iface,
      host_dev_name: spec.network.tapName,
      guest_mac: guestMac(spec.network.guestIp),
    }]
    : [];
  const machine: MachineConfiguration = {
    vcpu_count: spec.vcpuCount,
    mem_size_mib: spec.memSizeMib,
    smt: false,
  };
  const vsock: Vsock | undefined = spec.vsockCid === undefined
    ? undefined
    : { guest_cid: spec.vsockCid, uds_path: `${spec.vmDir}/${vmFiles.vsockSocket}` };

  const calls: FirecrackerApiCall[] = [
    { resource: "logger", method: "PUT", path: "/logger", body: logger },
    { resource: "metrics", method: "PUT", path: "/metrics", body: metrics },
    { resource: "boot-source", method: "PUT", path: "/boot-source", body: bootSource },
    ...drives.map((body): FirecrackerApiCall => ({
      resource: "drive",
      method: "PUT",
      path: `/drives/${body.drive_id}`,
      body,
    })),
    ...ifaces.map((body): FirecrackerApiCall => ({
      resource: "network-interface",
      method: "PUT",
      path: `/network-interfaces/${body.iface_id}`,
      body,
    })),
    { resource: "machine-config", method: "PUT", path: "/machine-config", body: machine },
  ];
  if (vsock) calls.push({ resource: "vsock", method: "PUT", path: "/vsock", body: vsock });
  calls.push({
    resource: "action",
    method: "PUT",
    path: "/actions",
    body: { action_type: "InstanceStart" },
  });
  const configFile: FirecrackerConfigFile = {
    "boot-source": bootSource,
    drives,
    "machine-config": machine,
    "network-interfaces": ifaces,
    logger,
    metrics,
  };
  if (vsock) configFile.vsock = vsock;
  return { calls, configFile };
}

function checkSpec(spec: FirecrackerVmSpec): void {
  checkPath("VM directory", spec.vmDir);
  checkPath("kernel", spec.kernelPath);
  if (spec.initrdPath !== undefined) checkPath("initrd", spec.initrdPath);
  checkPath("root disk", spec.rootDisk);
  if (spec.workDisk !== undefined) checkPath("work disk", spec.workDisk);
  checkBootArgs(spec.bootArgs);
  checkInt("vCPU count", spec.vcpuCount, 1, 32);
  checkInt("memory size (MiB)", spec.memSizeMib, 1, 2 ** 32);
  if (spec.vsockCid !== undefined) checkInt("vsock CID", spec.vsockCid, 3, 2 ** 32 - 1);
  if (spec.network) {
    const tap = spec.network.tapName;
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tap) || tap === "." || tap === "..") {
      throw invalid(
        `Cannot use tap name ${JSON.stringify(tap)}: it must be 1–15 of A-Z a-z 0-9 _ . -`,
      );
    }
    if (!Number.isInteger(spec.network.guestIp) || spec.network.guestIp < 0) {
      throw invalid(`Cannot use guest address ${spec.network.guestIp}: it is not an IPv4 number`);
    }
  }
  const bytes = (s: string) => new TextEncoder().encode(s).length;
  const apiSocket = `${spec.vmDir}/${vmFiles.apiSocket}`;
  const vsockSocket = `${spec.vmDir}/${vmFiles.vsockSocket}`;
  if (
    bytes(apiSocket) >= UNIX_PATH_MAX || bytes(vsockSocket) + VSOCK_PORT_SUFFIX >= UNIX_PATH_MAX
  ) {
    throw invalid(
      `Cannot use VM directory "${spec.vmDir}": its sockets would exceed the ${
        UNIX_PATH_MAX - 1
      }-byte unix socket path limit`,
    );
  }
}

function checkPath(what: string, path: string): void {
  if (!path.startsWith("/") || hasControl(path)) {
    throw invalid(
      `Cannot use ${what} path ${
        JSON.stringify(path)
      }: it must be absolute, without control characters`,
    );
  }
}

function checkBootArgs(args: string): void {
  if (/[^\x20-\x7e]/.test(args)) {
    throw invalid(
      `Cannot use kernel command line ${JSON.stringify(args)}: only printable ASCII is allowed`,
    );
  }
  if (/(^|\s)root=/.test(args)) {
    throw invalid(
      `Cannot use kernel command line "${args}": it sets root=, which Firecracker adds itself`,
    );
  }
  if (args.length > MAX_BOOT_ARGS_BYTES) {
    throw invalid(
      `Cannot use a ${args.length}-byte kernel command line: at most ${MAX_BOOT_ARGS_BYTES} bytes fit`,
    );
  }
}

function checkInt(what: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid(`Cannot use ${what} ${value}: it must be a whole number from ${min} to ${max}`);
  }
}

function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function invalid(message: string): FirecrackerError {
  return new FirecrackerError(message, { code: "invalid_argument" });
}
