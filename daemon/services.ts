/**
 * Builds the daemon's services and wires them together; the daemon only composes what
 * this returns. Each service owns its state and locks; none reaches into another.
 *
 * @module
 */

import { BlobCache } from "../catalog/oci/blob_cache.ts";
import { type Catalogs, loadCatalogs } from "../catalog/catalog_index.ts";
import { selectPrivilegedOps } from "../host/privileged/select_privileged_ops.ts";
import { classifyKvm } from "../host/vmm/kvm.ts";
import { probeFirecracker } from "../host/vmm/firecracker/version.ts";
import {
  defaultSshKey,
  imagesDir,
  kernelsDir,
  knownHostsPath,
  type Layout,
  ociBlobsDir,
} from "../host/layout.ts";
import { ensureKey } from "../host/ssh/ssh.ts";
import type { Store } from "../store/db.ts";
import { listVms } from "../store/vms.ts";
import type { Config } from "./config.ts";
import { GuestAccess } from "./vm/guest_access.ts";
import { HostNetwork } from "./network/host_network.ts";
import { ImageService } from "./image/image_service.ts";
import { KernelService } from "./image/kernel_service.ts";
import type { Logger } from "./logger.ts";
import { newOpId, type OpContext } from "./rpc/server.ts";
import { SshConfigManager } from "./ssh_config_manager.ts";
import { sweepStaging } from "./image/staging.ts";
import type { FaultInjector, VmDeps } from "./vm/deps.ts";
import { HandleStore } from "./vm/handles.ts";
import { reconcile } from "./vm/reconcile.ts";
import { VmService } from "./vm/vm_service.ts";
import { WorkspaceService } from "./workspace/workspace_service.ts";
import { chooseVmm } from "./vmm/choice.ts";
import { FirecrackerDriver } from "./vmm/firecracker.ts";
import { JailedFirecrackerDriver } from "./vmm/jailed_firecracker.ts";
import { QemuDriver } from "./vmm/qemu.ts";
import { instanceFor } from "../host/instance.ts";
import { startLogKeeper } from "./vm/log_keeper.ts";

/** How long a guest may take to answer SSH after its VMM starts. */
const BOOT_TIMEOUT_MS = 240_000;
/** How long a fetched mirror catalog is reused. */
const CATALOG_TTL_MS = 60_000;

/** Everything the daemon runs. */
export interface DaemonServices {
  layout: Layout;
  config: Config;
  logger: Logger;
  store: Store;
  net: HostNetwork;
  images: ImageService;
  /** The OCI blob cache pulls share (pruned by `image cache prune`). */
  blobs: BlobCache;
  kernels: KernelService;
  vms: VmService;
  vmDeps: VmDeps;
  workspaces: WorkspaceService;
  sshConfig: SshConfigManager;
  /** Brings host state in line with the store; runs before the socket opens. */
  startup(): Promise<void>;
  /** Releases daemon-only resources (DNS, idle taps); running VMs stay. */
  shutdown(): Promise<void>;
}

/** Inputs of {@linkcode buildServices}. */
export interface ServiceInputs {
  layout: Layout;
  config: Config;
  logger: Logger;
  store: Store;
  faults?: FaultInjector;
}

/** Builds and wires the services. */
export async function buildServices(i: ServiceInputs): Promise<DaemonServices> {
  const { layout, config, logger, store } = i;
  const privileges = await selectPrivilegedOps(layout);
  const ops = privileges.ops;
  const catalogs = cachedCatalogs(config.catalogUrl);
  const kernels = new KernelService({ layout, store, catalogs });
  const blobs = new BlobCache(ociBlobsDir(layout));
  const images = new ImageService({
    layout,
    store,
    ops,
    kernels,
    blobs,
    catalogs,
    imageLimits: config.imageLimits,
  });
  const instance = instanceFor(layout.stateDir);
  const net = new HostNetwork(ops, config, logger, { instance, configFile: layout.configFile });
  const keyPath = config.sshKeyPath || defaultSshKey(layout);
  const guest = new GuestAccess(keyPath, knownHostsPath(layout), layout.runtimeDir);
  // The daemon cannot see /dev, /proc or /sys itself: the host is probed through `ops`.
  const host = await ops.probeHost({});
  // Read once: which Firecracker, which release (it decides the guest's configuration).
  const firecracker = await probeFirecracker(config.firecrackerBin);
  const decision = chooseVmm(config.vmm, { kvm: classifyKvm(host.kvm), firecracker });
  const drivers = {
    // With a system install and a jailer, Firecracker is launched by the root helper.
    firecracker: config.jailerBin && privileges.mode === "helper"
      ? new JailedFirecrackerDriver(ops, firecracker)
      : new FirecrackerDriver(firecracker, ops),
    qemu: new QemuDriver(config.qemuBin, decision.accel, {
      procs: ops,
      hasVsock: host.devices.vhostVsock,
      tscKhz: host.cpuKhz,
    }),
  };
  const vmDeps: VmDeps = {
    layout,
    instance,
    config,
    store,
    ops,
    net,
    guest,
    handles: new HandleStore(store),
    images,
    kernels,
    driver: (kind) => drivers[kind],
    defaultVmm: decision.vmm,
    publicKey: () => ensureKey(keyPath),
    bootTimeoutMs: BOOT_TIMEOUT_MS,
    faults: i.faults,
  };
  const vms = new VmService(vmDeps);
  const workspaces = new WorkspaceService({ vms, vmDeps });
  const sshConfig = new SshConfigManager(layout, {
    keyPath,
    knownHosts: knownHostsPath(layout),
    controlDir: layout.runtimeDir,
    hosts: () => listVms(store).map((v) => ({ name: v.name, ip: v.guestIp })),
  });
  let logKeeper: Disposable | undefined;
  const ctx = (): OpContext => ({
    opId: newOpId(),
    signal: new AbortController().signal,
    log: logger.child({ op_id: "startup" }),
    progress: () => {},
  });
  return {
    layout,
    config,
    logger,
    store,
    net,
    images,
    blobs,
    kernels,
    vms,
    vmDeps,
    workspaces,
    sshConfig,
    async startup() {
      logger.info("vmm selected", { vmm: decision.vmm, reason: decision.reason });
      logger.info("privileges", { mode: privileges.mode, detail: privileges.detail });
      await ensureKey(keyPath);
      for (const dir of [imagesDir(layout), kernelsDir(layout)]) await sweepStaging(dir);
      await net.start();
      await reconcile(vmDeps, ctx());
      await sshConfig.refresh().catch((err) =>
        logger.warn("ssh_config not written", { error: String(err) })
      );
      // Running VMs need their bridge; otherwise it waits for the first start.
      if (listVms(store).some((v) => v.status === "running")) await net.ready();
      logKeeper = startLogKeeper(vmDeps, logger);
    },
    async shutdown() {
      logKeeper?.[Symbol.dispose]();
      await net.stop();
    },
  };
}

function cachedCatalogs(catalogUrl: string): (signal?: AbortSignal) => Promise<Catalogs> {
  let cached: { at: number; value: Promise<Catalogs> } | undefined;
  return (signal) => {
    if (!catalogUrl) return loadCatalogs({ catalogUrl });
    if (!cached || Date.now() - cached.at > CATALOG_TTL_MS) {
      const value = loadCatalogs({ catalogUrl, signal });
      cached = { at: Date.now(), value };
      value.catch(() => cached = undefined);
    }
    return cached.value;
  };
}
