/**
 * The QEMU {@linkcode VmmDriver}: the same VM spec on QEMU's `microvm` machine, with KVM
 * when it can run standard guests and software emulation otherwise. `-no-reboot` makes a
 * guest `reboot` end QEMU, mirroring Firecracker with `reboot=k`.
 *
 * @module
 */

import { renderKernelCmdline } from "../host/kernel_cmdline.ts";
import { BangerError } from "../host/errors.ts";
import { cpuKhz } from "../host/kvm.ts";
import { vmFiles } from "../host/layout.ts";
import { pathExists } from "../host/libc.ts";
import { processExists, signalProcess } from "../host/process.ts";
import { readProcFile, readProcFileIfExists } from "../host/procfs.ts";
import { launchQemu, QemuProcess } from "../host/qemu.ts";
import { guestMac } from "../host/ipv4.ts";
import { processStats, type VmmDriver, type VmmLaunch, type VmmStats } from "./vmm_driver.ts";

const POLL_MS = 50;

/** Boots guests with `qemu-system-x86_64 -M microvm`. */
export class QemuDriver implements VmmDriver {
  readonly kind = "qemu";
  readonly hasVsock: boolean;
  readonly #binary: string;
  readonly #accel: "kvm" | "tcg";

  constructor(binary: string, accel: "kvm" | "tcg") {
    this.#binary = binary;
    this.#accel = accel;
    this.hasVsock = pathExists("/dev/vhost-vsock");
  }

  async launch(spec: VmmLaunch): Promise<number> {
    if (!spec.initrd) {
      throw new BangerError(`Cannot boot VM "${spec.vmId}" under QEMU: its kernel has no initrd`, {
        code: "failed_precondition",
        hint: "use a kernel from `banger kernel pull` (it ships the virtio initrd)",
      });
    }
    const khz = cpuKhz();
    const file = (name: string) => `${spec.vmDir}/${name}`;
    await Deno.writeFile(file(vmFiles.serialLog), new Uint8Array(), { mode: 0o600 });
    await Deno.remove(file(vmFiles.qemuMonitor)).catch(() => {});
    const proc = await launchQemu({
      accel: this.#accel,
      vcpus: spec.vcpu,
      memoryMib: spec.memoryMib,
      kernelPath: spec.kernel,
      initrdPath: spec.initrd,
      cmdline: renderKernelCmdline({ vmm: "qemu-microvm", tscKhz: khz, init: spec.init }),
      rootDiskPath: spec.rootDisk,
      workDiskPath: spec.workDisk,
      tap: { name: spec.tap, mac: guestMac(spec.guestIp) },
      ...(this.hasVsock ? { vsockCid: spec.vsockCid } : {}),
      serialLogPath: file(vmFiles.serialLog),
      monitorSocketPath: file(vmFiles.qemuMonitor),
      pidFilePath: file(vmFiles.pidFile),
    }, { binary: this.#binary, signal: spec.signal });
    return proc.pid;
  }

  async findPid(vmDir: string): Promise<number | undefined> {
    const pid = Number(
      (await Deno.readTextFile(`${vmDir}/${vmFiles.pidFile}`).catch(() => "")).trim(),
    );
    return Number.isInteger(pid) && pid > 1 && isOurs(pid, vmDir) ? pid : undefined;
  }

  alive(pid: number, vmDir: string): Promise<boolean> {
    return Promise.resolve(isOurs(pid, vmDir));
  }

  async stop(
    pid: number,
    vmDir: string,
    o: { exitWaitMs: number; signal?: AbortSignal },
  ): Promise<string> {
    if (!isOurs(pid, vmDir)) return "already-exited";
    if (await this.waitExit(pid, vmDir, o.exitWaitMs, o.signal)) return "exit";
    await new QemuProcess(pid, `${vmDir}/${vmFiles.qemuMonitor}`).stop({ signal: o.signal });
    return "quit";
  }

  kill(pid: number, vmDir: string, signal: string): Promise<boolean> {
    if (!isOurs(pid, vmDir)) return Promise.resolve(false);
    return Promise.resolve(signalProcess(pid, signal));
  }

  async waitExit(
    pid: number,
    vmDir: string,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (isOurs(pid, vmDir)) {
      if (Date.now() >= deadline || signal?.aborted) return false;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    return true;
  }

  async cleanup(vmDir: string): Promise<void> {
    for (const f of [vmFiles.qemuMonitor, vmFiles.pidFile]) {
      await Deno.remove(`${vmDir}/${f}`).catch(() => {});
    }
  }

  stats(pid: number): Promise<VmmStats> {
    return processStats(pid, (p) => Promise.resolve(readProcFile(p)));
  }
}

/** Whether `pid` is alive and its command line names this VM's monitor socket. */
function isOurs(pid: number, vmDir: string): boolean {
  if (!processExists(pid)) return false;
  const cmdline = readProcFileIfExists(`/proc/${pid}/cmdline`) ?? "";
  return cmdline.includes(`${vmDir}/${vmFiles.qemuMonitor}`);
}
