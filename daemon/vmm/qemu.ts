/**
 * The QEMU {@linkcode VmmDriver}: the same VM spec on QEMU's `microvm` machine, with KVM
 * when it can run standard guests and software emulation otherwise. `-no-reboot` makes a
 * guest `reboot` end QEMU, mirroring Firecracker with `reboot=k`.
 *
 * A QEMU launched by this daemon is its child: watched through the child status and
 * signalled through the child handle. One found after a daemon restart is recognised by
 * its command line (it names this VM's monitor socket) and watched and signalled through
 * `PrivilegedOps` (`readProcFile`, `signalVmm`): the daemon has no `--allow-ffi`.
 *
 * @module
 */

import { renderKernelCmdline } from "../../host/vmm/kernel_cmdline.ts";
import { BangerError } from "../../host/errors.ts";
import { vmFiles } from "../../host/layout.ts";
import type { VmmProcessOps } from "../../host/privileged/privileged_ops.ts";
import { processArgv } from "../../host/os/process.ts";
import { launchQemu, QemuProcess } from "../../host/vmm/qemu/qemu.ts";
import { guestMac } from "../../host/net/ipv4.ts";
import {
  processStats,
  type VmmDriver,
  type VmmLaunch,
  vmmSignal,
  type VmmStats,
} from "./driver.ts";

const POLL_MS = 50;

/** What the QEMU driver needs from the host, probed once at daemon start. */
export interface QemuHost {
  /** Watches and signals QEMUs this daemon did not launch. */
  procs: VmmProcessOps;
  /** `/dev/vhost-vsock` exists: guests get a vsock device. */
  hasVsock: boolean;
  /** The CPU clock for `tsc_early_khz` (`PrivilegedOps.probeHost`). */
  tscKhz?: number;
}

/** Boots guests with `qemu-system-x86_64 -M microvm`. */
export class QemuDriver implements VmmDriver {
  readonly kind = "qemu";
  readonly hasVsock: boolean;
  readonly #binary: string;
  readonly #accel: "kvm" | "tcg";
  readonly #host: QemuHost;
  /** The QEMUs this driver launched, by VM directory. */
  readonly #launched = new Map<string, QemuProcess>();

  constructor(binary: string, accel: "kvm" | "tcg", host: QemuHost) {
    this.#binary = binary;
    this.#accel = accel;
    this.#host = host;
    this.hasVsock = host.hasVsock;
  }

  async launch(spec: VmmLaunch): Promise<number> {
    if (!spec.initrd) {
      throw new BangerError(`Cannot boot VM "${spec.vmId}" under QEMU: its kernel has no initrd`, {
        code: "failed_precondition",
        hint: "use a kernel from `banger kernel pull` (it ships the virtio initrd)",
      });
    }
    const file = (name: string) => `${spec.vmDir}/${name}`;
    await Deno.writeFile(file(vmFiles.serialLog), new Uint8Array(), { mode: 0o600 });
    await Deno.remove(file(vmFiles.qemuMonitor)).catch(() => {});
    const cmdline = renderKernelCmdline({
      vmm: "qemu-microvm",
      tscKhz: this.#host.tscKhz,
      init: spec.init,
    });
    const proc = await launchQemu({
      accel: this.#accel,
      vcpus: spec.vcpu,
      memoryMib: spec.memoryMib,
      kernelPath: spec.kernel,
      initrdPath: spec.initrd,
      cmdline,
      rootDiskPath: spec.rootDisk,
      workDiskPath: spec.workDisk,
      tap: { name: spec.tap, mac: guestMac(spec.guestIp) },
      ...(this.hasVsock ? { vsockCid: spec.vsockCid } : {}),
      serialLogPath: file(vmFiles.serialLog),
      monitorSocketPath: file(vmFiles.qemuMonitor),
      pidFilePath: file(vmFiles.pidFile),
    }, { binary: this.#binary, signal: spec.signal });
    this.#launched.set(spec.vmDir, proc);
    return proc.pid;
  }

  async findPid(vmDir: string): Promise<number | undefined> {
    const pid = Number(
      (await Deno.readTextFile(`${vmDir}/${vmFiles.pidFile}`).catch(() => "")).trim(),
    );
    return Number.isInteger(pid) && pid > 1 && await this.#isOurs(pid, vmDir) ? pid : undefined;
  }

  alive(pid: number, vmDir: string): Promise<boolean> {
    return this.#isOurs(pid, vmDir);
  }

  async stop(
    pid: number,
    vmDir: string,
    o: { exitWaitMs: number; signal?: AbortSignal },
  ): Promise<string> {
    if (!(await this.#isOurs(pid, vmDir))) return "already-exited";
    if (await this.waitExit(pid, vmDir, o.exitWaitMs, o.signal)) return "exit";
    await this.#process(pid, vmDir).stop({ signal: o.signal });
    return "quit";
  }

  async kill(pid: number, vmDir: string, signal: string): Promise<boolean> {
    const sig = vmmSignal(signal);
    if (!(await this.#isOurs(pid, vmDir))) return false;
    return await this.#process(pid, vmDir).kill(sig);
  }

  async waitExit(
    pid: number,
    vmDir: string,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const own = this.#own(pid, vmDir);
    if (own) {
      return await own.waitForExit({ timeoutMs, signal }).then(() => true, () => false);
    }
    const deadline = Date.now() + timeoutMs;
    while (await this.#isOurs(pid, vmDir)) {
      if (Date.now() >= deadline || signal?.aborted) return false;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    return true;
  }

  async cleanup(vmDir: string): Promise<void> {
    const own = this.#launched.get(vmDir);
    if (own && !(await own.isRunning())) this.#launched.delete(vmDir);
    for (const f of [vmFiles.qemuMonitor, vmFiles.pidFile]) {
      await Deno.remove(`${vmDir}/${f}`).catch(() => {});
    }
  }

  stats(pid: number): Promise<VmmStats> {
    return processStats(pid, this.#host.procs);
  }

  /** The QEMU launched here for `vmDir` with this pid, if any. */
  #own(pid: number, vmDir: string): QemuProcess | undefined {
    const own = this.#launched.get(vmDir);
    return own?.pid === pid ? own : undefined;
  }

  #process(pid: number, vmDir: string): QemuProcess {
    return this.#own(pid, vmDir) ??
      new QemuProcess(pid, `${vmDir}/${vmFiles.qemuMonitor}`, { procs: this.#host.procs, vmDir });
  }

  /** Whether `pid` is this VM's running QEMU (its command line names our monitor socket). */
  async #isOurs(pid: number, vmDir: string): Promise<boolean> {
    const own = this.#own(pid, vmDir);
    if (own) return await own.isRunning();
    const argv = await processArgv(this.#host.procs, pid);
    const monitor = `${vmDir}/${vmFiles.qemuMonitor}`;
    return (argv ?? []).some((a) => a.includes(monitor));
  }
}
