/**
 * The Firecracker {@linkcode VmmDriver} under the jailer (`jailer_bin` set): the root
 * helper prepares the chroot and starts the jailer (`launchJailedFirecracker`), then this
 * driver links the VM directory's usual names (`fc.sock`, `vsock.sock`, `vmm.log`,
 * `metrics.json`, `serial.log`) to the files inside the chroot, records the pid, and
 * configures and boots the guest over the API socket exactly as without a jail (the
 * disks go as `disks`: hard-linked, never copied, so the guest's writes land in them). Every
 * later step (liveness, stop, kill, stats) is the plain Firecracker driver's: the jailed
 * process's command line names `<vmDir>/fc.sock` like an unjailed one.
 *
 * @module
 */

import { writeFileAtomic } from "../../host/os/atomic_file.ts";
import { type Firecracker, serialLogTail } from "../../host/vmm/firecracker/firecracker.ts";
import { vmFiles } from "../../host/layout.ts";
import type { PrivilegedOps } from "../../host/privileged/privileged_ops.ts";
import { BangerError } from "../../host/errors.ts";
import type { FirecrackerProbe } from "../../host/vmm/firecracker/version.ts";
import type { VmmDriver, VmmLaunch, VmmStats } from "./driver.ts";
import { bootGuest, FirecrackerDriver } from "./firecracker.ts";

const API_WAIT_MS = 10_000;
const POLL_MS = 20;

/** Boots guests with Firecracker under the jailer, through the root helper. */
export class JailedFirecrackerDriver implements VmmDriver {
  readonly kind = "firecracker";
  readonly hasVsock = true;
  readonly #ops: PrivilegedOps;
  readonly #plain: FirecrackerDriver;

  /**
   * `firecracker` (probed by the daemon) decides the guest's configuration; the helper
   * picks the binary it jails from root's own config.
   */
  constructor(ops: PrivilegedOps, firecracker: FirecrackerProbe) {
    this.#ops = ops;
    this.#plain = new FirecrackerDriver(firecracker, ops);
  }

  async launch(spec: VmmLaunch): Promise<number> {
    const version = this.#plain.version();
    const isDevice = spec.rootDisk.startsWith("/dev/");
    const jail = await this.#ops.launchJailedFirecracker({
      vmId: spec.vmId,
      vmDir: spec.vmDir,
      files: [spec.kernel, ...(spec.initrd ? [spec.initrd] : [])],
      disks: isDevice ? [spec.workDisk] : [spec.workDisk, spec.rootDisk],
      ...(isDevice ? { devices: [spec.rootDisk] } : {}),
    });
    try {
      const inside = `${jail.chrootDir}${spec.vmDir}`;
      for (
        const name of [vmFiles.apiSocket, vmFiles.vsockSocket, vmFiles.vmmLog, vmFiles.metrics]
      ) {
        await relink(`${inside}/${name}`, `${spec.vmDir}/${name}`);
      }
      await relink(jail.serialLog, `${spec.vmDir}/${vmFiles.serialLog}`);
      await writeFileAtomic(`${spec.vmDir}/${vmFiles.pidFile}`, `${jail.pid}\n`);
      const vmm = await waitForApi(this.#plain, spec.vmDir, spec.signal);
      await bootGuest(vmm, spec, version);
    } catch (err) {
      await this.kill(jail.pid, spec.vmDir, "SIGKILL").catch(() => false);
      await this.waitExit(jail.pid, spec.vmDir, 5000).catch(() => false);
      await this.cleanup(spec.vmDir).catch(() => {});
      throw err;
    }
    return jail.pid;
  }

  findPid(vmDir: string): Promise<number | undefined> {
    return this.#plain.findPid(vmDir);
  }
  alive(pid: number, vmDir: string): Promise<boolean> {
    return this.#plain.alive(pid, vmDir);
  }
  stop(
    pid: number,
    vmDir: string,
    o: { exitWaitMs: number; signal?: AbortSignal },
  ): Promise<string> {
    return this.#plain.stop(pid, vmDir, o);
  }
  kill(pid: number, vmDir: string, signal: string): Promise<boolean> {
    return this.#plain.kill(pid, vmDir, signal);
  }
  waitExit(pid: number, vmDir: string, timeoutMs: number): Promise<boolean> {
    return this.#plain.waitExit(pid, vmDir, timeoutMs);
  }
  stats(pid: number, vmDir: string): Promise<VmmStats> {
    return this.#plain.stats(pid, vmDir);
  }

  /**
   * The plain cleanup, then the logs are copied out of the jail (so `vm logs` after a stop
   * still shows the boot) and the helper removes the chroot once the process is gone.
   */
  async cleanup(vmDir: string): Promise<void> {
    await this.#plain.cleanup(vmDir);
    if (await this.#plain.find(vmDir)) return;
    for (const name of [vmFiles.vmmLog, vmFiles.metrics, vmFiles.serialLog]) {
      await keepLog(`${vmDir}/${name}`);
    }
    const vmId = vmDir.slice(vmDir.lastIndexOf("/") + 1);
    await this.#ops.cleanupJailedFirecracker({ vmId });
  }
}

/** Replaces the symlink `link` into the jail with a copy of what it points at. */
async function keepLog(link: string): Promise<void> {
  const info = await Deno.lstat(link).catch(() => undefined);
  if (!info?.isSymlink) return;
  const copy = `${link}.kept`;
  const copied = await Deno.copyFile(link, copy).then(() => true, () => false);
  if (copied) await Deno.rename(copy, link);
  else await Deno.remove(link).catch(() => {});
}

/** Replaces `link` with a symlink to `target`. */
async function relink(target: string, link: string): Promise<void> {
  await Deno.remove(link).catch(() => {});
  await Deno.symlink(target, link);
}

async function waitForApi(
  plain: FirecrackerDriver,
  vmDir: string,
  signal?: AbortSignal,
): Promise<Firecracker> {
  const deadline = Date.now() + API_WAIT_MS;
  for (;;) {
    signal?.throwIfAborted();
    const vmm = await plain.find(vmDir);
    if (vmm) {
      const up = await vmm.client.getVersion(AbortSignal.timeout(1000)).then(
        () => true,
        () => false,
      );
      if (up) return vmm;
    }
    if (Date.now() >= deadline) {
      const tail = await serialLogTail(vmDir);
      throw new BangerError(
        `Cannot start the jailed Firecracker of "${vmDir}": its API socket did not answer within ${API_WAIT_MS} ms${
          tail ? `: ${tail}` : ""
        }`,
        { code: "timeout", hint: `see ${vmDir}/${vmFiles.serialLog}` },
      );
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
