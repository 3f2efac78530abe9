/**
 * What the VM lifecycle code needs, gathered so each verb file takes one argument.
 *
 * @module
 */

import type { Instance } from "../../host/instance.ts";
import type { Layout } from "../../host/layout.ts";
import type { PrivilegedOps } from "../../host/privileged/privileged_ops.ts";
import type { Store } from "../../store/db.ts";
import type { Config } from "../config.ts";
import type { GuestAccess } from "./guest_access.ts";
import type { HostNetwork } from "../network/host_network.ts";
import type { ImageService } from "../image/image_service.ts";
import type { KernelService } from "../image/kernel_service.ts";
import type { HandleStore } from "./handles.ts";
import type { VmmDriver } from "../vmm/driver.ts";

/** Test seam: called before each start step; throwing fails that step. */
export interface FaultInjector {
  beforeStep(step: string): void | Promise<void>;
}

/** Dependencies of the VM lifecycle. */
export interface VmDeps {
  layout: Layout;
  /** This instance's names on the host (taps, nft table, vsock CIDs). */
  instance: Instance;
  config: Config;
  store: Store;
  ops: PrivilegedOps;
  net: HostNetwork;
  guest: GuestAccess;
  handles: HandleStore;
  images: ImageService;
  kernels: KernelService;
  /** The driver for a VM's VMM. */
  driver(kind: "firecracker" | "qemu"): VmmDriver;
  /** The VMM new VMs get (from `vmm` and what the host offers). */
  defaultVmm: "firecracker" | "qemu";
  /** The managed public key written to guests. */
  publicKey(): Promise<string>;
  /** How long a guest may take to answer SSH. */
  bootTimeoutMs: number;
  /** Failure injection for tests. */
  faults?: FaultInjector;
}
