/**
 * The Firecracker {@linkcode VmmDriver}: launch, configure over the API socket, boot;
 * stop by waiting for the guest's reboot, then Ctrl+Alt+Del, then SIGKILL.
 *
 * @module
 */

import { renderKernelCmdline } from "../../host/vmm/kernel_cmdline.ts";
import { Firecracker } from "../../host/vmm/firecracker/firecracker.ts";
import {
  type FirecrackerProbe,
  requireSupportedFirecracker,
} from "../../host/vmm/firecracker/version.ts";
import { vmFiles } from "../../host/layout.ts";
import type { VmmProcessOps } from "../../host/privileged/privileged_ops.ts";
import {
  processStats,
  type VmmDriver,
  type VmmLaunch,
  vmmSignal,
  type VmmStats,
} from "./driver.ts";

/** Configures a VMM of Firecracker `version` whose API answers for `spec` and starts the guest. */
export async function bootGuest(vmm: Firecracker, spec: VmmLaunch, version: string): Promise<void> {
  await vmm.configure({
    vmDir: spec.vmDir,
    kernelPath: spec.kernel,
    initrdPath: spec.initrd,
    bootArgs: renderKernelCmdline({
      vmm: "firecracker",
      firecrackerVersion: version,
      init: spec.init,
    }),
    rootDisk: spec.rootDisk,
    workDisk: spec.workDisk,
    network: { tapName: spec.tap, guestIp: spec.guestIp },
    vcpuCount: spec.vcpu,
    memSizeMib: spec.memoryMib,
    vsockCid: spec.vsockCid,
  }, spec.signal);
  await vmm.start(spec.signal);
}

/**
 * Bounds of the stop sequence. After Ctrl+Alt+Del a systemd guest runs its whole shutdown
 * (units get `DefaultTimeoutStopSec`, 90 s, each) before the reboot ends Firecracker:
 * a minimal one takes a few seconds, a busy one far longer — Firecracker's own tests
 * allow 120 s. SIGKILL loses the guest's page cache, so it waits that long too.
 */
export const FIRECRACKER_STOP = { ctrlAltDelWaitMs: 120_000, killWaitMs: 5_000 };

/**
 * Boots guests with Firecracker (or an API-compatible binary, such as the test fake).
 * VMMs it launched are watched through their child status; others (after a daemon
 * restart) are found from their pidfile and watched and signalled through `procs`.
 */
export class FirecrackerDriver implements VmmDriver {
  readonly kind = "firecracker";
  readonly hasVsock = true;
  readonly #firecracker: FirecrackerProbe;
  readonly #procs: VmmProcessOps;
  /** The VMMs this driver launched, by VM directory, until they are found gone. */
  readonly #launched = new Map<string, Firecracker>();

  /** `firecracker` is the binary the daemon probed at start (path and version). */
  constructor(firecracker: FirecrackerProbe, procs: VmmProcessOps) {
    this.#firecracker = firecracker;
    this.#procs = procs;
  }

  /**
   * The version guests are configured for.
   *
   * @throws {FirecrackerVersionError} when the binary is missing or older than supported.
   */
  version(): string {
    return requireSupportedFirecracker(this.#firecracker);
  }

  async launch(spec: VmmLaunch): Promise<number> {
    const version = this.version();
    const binary = this.#firecracker.path ?? "firecracker";
    const vmm = await Firecracker.launch({
      binary,
      vmDir: spec.vmDir,
      id: spec.vmId,
      signal: spec.signal,
      procs: this.#procs,
    });
    this.#launched.set(spec.vmDir, vmm);
    try {
      await bootGuest(vmm, spec, version);
    } catch (err) {
      await vmm.kill("SIGKILL").catch(() => false);
      await vmm.waitForExit(5000).catch(() => false);
      await vmm.cleanup().catch(() => {});
      this.#launched.delete(spec.vmDir);
      throw err;
    }
    return vmm.pid;
  }

  /** The running VMM of `vmDir`: the one launched here, else one adopted from its pidfile. */
  async find(vmDir: string): Promise<Firecracker | undefined> {
    const own = this.#launched.get(vmDir);
    if (own && await own.isRunning()) return own;
    this.#launched.delete(vmDir);
    return await Firecracker.adopt(vmDir, { procs: this.#procs });
  }

  async findPid(vmDir: string): Promise<number | undefined> {
    return (await this.find(vmDir))?.pid;
  }

  async alive(_pid: number, vmDir: string): Promise<boolean> {
    return (await this.find(vmDir)) !== undefined;
  }

  async stop(
    _pid: number,
    vmDir: string,
    o: { exitWaitMs: number; signal?: AbortSignal },
  ): Promise<string> {
    const vmm = await this.find(vmDir);
    if (!vmm) return "already-exited";
    return (await vmm.stop({ ...FIRECRACKER_STOP, exitWaitMs: o.exitWaitMs, signal: o.signal }))
      .endedBy;
  }

  async kill(_pid: number, vmDir: string, signal: string): Promise<boolean> {
    const sig = vmmSignal(signal);
    const vmm = await this.find(vmDir);
    return vmm ? await vmm.kill(sig) : false;
  }

  async waitExit(_pid: number, vmDir: string, timeoutMs: number): Promise<boolean> {
    const vmm = await this.find(vmDir);
    return vmm ? await vmm.waitForExit(timeoutMs) : true;
  }

  async cleanup(vmDir: string): Promise<void> {
    const vmm = await this.find(vmDir);
    if (vmm) return;
    for (const f of [vmFiles.apiSocket, vmFiles.vsockSocket, vmFiles.pidFile]) {
      await Deno.remove(`${vmDir}/${f}`).catch(() => {});
    }
  }

  async stats(pid: number, vmDir: string): Promise<VmmStats> {
    const vmm = await this.find(vmDir);
    const base = await processStats(pid, this.#procs);
    if (!vmm) return base;
    await vmm.client.putAction("FlushMetrics").catch(() => {});
    return { ...base, metrics: await vmm.readMetrics().catch(() => undefined) };
  }
}
