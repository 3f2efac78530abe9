/**
 * Starting a VM is a list of steps, each with an undo (DESIGN.md invariant 8): root disk,
 * work disk (+ key, guest.env, file_sync), tap, NAT, VMM launch, boot wait, DNS. On
 * failure the completed steps — and the failing one, which may have acquired part of its
 * resource — are undone in reverse, and the row records the failing step. Every handle is
 * recorded (handles.json, then the row) the moment it is acquired.
 *
 * Runs under the VM's lock.
 *
 * @module
 */

import { renderGuestEnv } from "../../catalog/guest/guest_env.ts";
import { aggregateErrors, BangerError, errorMessage } from "../../host/errors.ts";
import { parseIpv4 } from "../../host/net/ipv4.ts";
import { vmFiles } from "../../host/layout.ts";
import type { RootDiskHandle } from "../../host/disk/rootdisk.ts";
import { saveVm, type VmRecord } from "../../store/vms.ts";
import { getImageById, type ImageRecord } from "../../store/images.ts";
import type { OpContext } from "../rpc/server.ts";
import type { VmDeps } from "./deps.ts";
import { fileSyncOps, hostKeyOps, identityOps } from "./work_disk.ts";
import { formatPublication } from "../network/published_ports.ts";
import { holderOf } from "./port_publishing.ts";
import { PROVIDED_HOST_KEY, sshdConfig } from "../../catalog/guest/sshd_config.ts";

/** Per image (id and rootfs): whether its host-key unit installs the key it is given. */
const installsHostKey = new Map<string, Promise<boolean>>();

/** A start that failed at a step. */
export class VmStartError extends BangerError {}

interface Step {
  name: string;
  message: string;
  run(): Promise<void>;
  undo?(): Promise<void>;
}

/**
 * Boots `vm`. On success the VM is `running`; on failure everything acquired is released,
 * the VM is `error` with `lastError.step`, and the error is rethrown.
 */
export async function startVm(vm: VmRecord, deps: VmDeps, ctx: OpContext): Promise<VmRecord> {
  const run = new StartRun(vm, deps, ctx);
  return await run.execute();
}

class StartRun {
  vm: VmRecord;
  readonly #deps: VmDeps;
  readonly #ctx: OpContext;
  #image?: ImageRecord;
  #kernel?: { vmlinux: string; initrd?: string };
  #workDiskCreated = false;

  constructor(vm: VmRecord, deps: VmDeps, ctx: OpContext) {
    this.vm = vm;
    this.#deps = deps;
    this.#ctx = ctx;
  }

  async execute(): Promise<VmRecord> {
    this.#save({ status: "starting", lastError: undefined });
    const steps = this.#steps();
    const done: Step[] = [];
    for (const step of steps) {
      this.#ctx.progress(step.name, step.message);
      try {
        await this.#deps.faults?.beforeStep(step.name);
        await step.run();
        done.push(step);
      } catch (err) {
        done.push(step);
        await this.#rollback(done, step, err);
        throw err instanceof BangerError ? err : new VmStartError(
          `Cannot start VM "${this.vm.name}" at step ${step.name}: ${errorMessage(err)}`,
          { cause: err },
        );
      }
    }
    this.#save({ status: "running", startedAt: new Date().toISOString() });
    this.#ctx.log.info("vm started", { vm: this.vm.name, pid: this.vm.runtime.pid });
    return this.vm;
  }

  #steps(): Step[] {
    const d = this.#deps;
    const vm = () => this.vm;
    const dir = this.vm.runtime.vmDir;
    const workDisk = `${dir}/${vmFiles.workDisk}`;
    return [
      {
        name: "prepare",
        message: "Checking the image and kernel",
        run: async () => {
          await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
          this.#image = getImageById(d.store, vm().imageId);
          const image = this.#image;
          if (!image) throw new VmStartError(`Cannot start VM "${vm().name}": its image is gone`);
          if (!image.dir) {
            throw new VmStartError(
              `Cannot start VM "${vm().name}": image "${image.name}" is not managed by banger`,
              {
                code: "failed_precondition",
                hint: `banger image promote ${image.name}`,
              },
            );
          }
          this.#kernel = image.kernelFiles ??
            (image.kernelName ? d.kernels.get(image.kernelName) : undefined);
          if (!this.#kernel) {
            throw new VmStartError(
              `Cannot start VM "${vm().name}": image "${image.name}" has no kernel`,
            );
          }
        },
      },
      {
        name: "ports",
        message: this.vm.spec.publish?.length
          ? `Publishing ${this.vm.spec.publish.map(formatPublication).join(", ")}`
          : "No published ports",
        run: async () => {
          // Before any disk is made: a taken host port fails the start at once.
          const pubs = vm().spec.publish ?? [];
          if (pubs.length) await d.net.ports.open(vm(), pubs, (p) => holderOf(d, vm().id, p));
        },
        undo: () => Promise.resolve(d.net.ports.close(vm().id)),
      },
      {
        name: "root_disk",
        message: "Creating the copy-on-write root disk",
        run: async () => {
          const handle = await d.ops.createRootDisk({
            id: vm().id,
            baseImage: this.#image?.rootfs ?? "",
            vmDir: dir,
            cowBytes: vm().spec.overlayBytes,
          });
          this.vm = await d.handles.update(vm(), { rootDisk: handle });
        },
        undo: async () => {
          const h = (await d.handles.read(vm())).rootDisk as RootDiskHandle | undefined;
          if (!h) return;
          await d.ops.releaseRootDisk({ handle: h });
          this.vm = await d.handles.update(vm(), { rootDisk: undefined });
        },
      },
      {
        name: "work_disk",
        message: "Preparing the work disk (/root)",
        run: async () => {
          try {
            await Deno.stat(workDisk);
          } catch {
            await d.ops.createWorkDisk({
              path: workDisk,
              sizeBytes: vm().spec.diskBytes,
              label: "banger-work",
            });
            this.#workDiskCreated = true;
          }
          const sync = await fileSyncOps(d.config.fileSync);
          for (const s of sync.skipped) this.#ctx.log.warn("file_sync source missing", { path: s });
          const hostKey = await hostKeyOps(dir);
          await d.ops.writeExt4({
            image: workDisk,
            ops: [
              ...identityOps(await d.publicKey(), this.#guestEnv()),
              ...hostKey.ops,
              ...sync.ops,
            ],
          });
          // Pinned before the guest ever answers, when its image installs the key it is given.
          if (await this.#imageInstallsHostKey()) {
            await d.guest.pin(this.#guestRef(), hostKey.publicKey);
          }
        },
        undo: async () => {
          if (this.#workDiskCreated) await Deno.remove(workDisk).catch(() => {});
        },
      },
      {
        name: "tap",
        message: "Attaching a network tap",
        run: async () => {
          await d.net.ready();
          const tap = await d.net.taps.acquire();
          this.vm = await d.handles.update(vm(), { tap });
          // Before the guest can send a frame: only its own MAC and address get through.
          await d.net.guard(vm(), tap);
        },
        undo: async () => {
          const tap = (await d.handles.read(vm())).tap;
          if (!tap) return;
          await d.net.unguard(vm().id);
          await d.net.taps.release(tap);
          this.vm = await d.handles.update(vm(), { tap: undefined });
        },
      },
      {
        name: "nat",
        message: this.vm.spec.nat ? "Installing NAT" : "No NAT (the guest has no outbound network)",
        run: async () => {
          if (!vm().spec.nat) return;
          this.vm = await d.handles.update(vm(), { natInstalled: true });
          await d.net.addNat(vm().id, vm().guestIp);
        },
        undo: async () => {
          if (!(await d.handles.read(vm())).natInstalled) return;
          await d.net.removeNat(vm().id);
          this.vm = await d.handles.update(vm(), { natInstalled: undefined });
        },
      },
      {
        name: "vmm",
        message: `Launching ${vm().spec.vmm}`,
        run: async () => {
          const h = await d.handles.read(vm());
          const root = h.rootDisk as RootDiskHandle;
          const kernel = this.#kernel ?? { vmlinux: "" };
          const pid = await d.driver(vm().spec.vmm).launch({
            vmId: vm().id,
            vmDir: dir,
            vcpu: vm().spec.vcpu,
            memoryMib: vm().spec.memoryMib,
            kernel: kernel.vmlinux,
            initrd: kernel.initrd,
            init: this.#image?.init,
            rootDisk: root.devicePath,
            workDisk,
            tap: h.tap ?? "",
            guestIp: parseIpv4(vm().guestIp) ?? 0,
            vsockCid: vm().vsockCid,
            signal: this.#ctx.signal,
          });
          this.vm = await d.handles.update(vm(), { pid });
        },
        undo: async () => {
          const pid = (await d.handles.read(vm())).pid;
          const driver = d.driver(vm().spec.vmm);
          if (pid !== undefined) {
            await driver.kill(pid, dir, "SIGKILL");
            await driver.waitExit(pid, dir, 5000);
          }
          await driver.cleanup(dir);
          await d.guest.closeMaster(this.#guestRef());
          this.vm = await d.handles.update(vm(), { pid: undefined });
        },
      },
      {
        name: "boot",
        message: "Waiting for the guest to boot",
        run: async () => {
          const pid = this.vm.runtime.pid ?? 0;
          const driver = d.driver(vm().spec.vmm);
          const via = await d.guest.waitForGuest(this.#guestRef(), {
            timeoutMs: d.bootTimeoutMs,
            vsock: driver.hasVsock,
            signal: this.#ctx.signal,
            stillAlive: () => driver.alive(pid, dir),
          });
          this.#ctx.log.info("guest ready", { vm: vm().name, via });
          this.vm = { ...this.vm, runtime: { ...this.vm.runtime, guestSsh: via === "ssh" } };
        },
      },
      {
        name: "dns",
        message: `Publishing ${vm().name}.vm`,
        run: () => {
          d.net.dns.set(vm().name, vm().guestIp);
          return Promise.resolve();
        },
        undo: () => {
          d.net.dns.remove(vm().name);
          return Promise.resolve();
        },
      },
    ];
  }

  #guestRef() {
    return {
      id: this.vm.id,
      name: this.vm.name,
      guestIp: this.vm.guestIp,
      vmDir: this.vm.runtime.vmDir,
    };
  }

  /** Whether the image's host-key unit installs the key the daemon provides (newer images). */
  #imageInstallsHostKey(): Promise<boolean> {
    const image = this.#image;
    if (!image?.rootfs) return Promise.resolve(false);
    // A published image's files never change: read its unit once, not at every start.
    const key = `${image.id}:${image.rootfs}`;
    let known = installsHostKey.get(key);
    if (!known) {
      known = this.#deps.ops.readExt4File({
        image: image.rootfs,
        path: `/etc/systemd/system/${sshdConfig.hostKeysUnitName}`,
      }).then((unit) => unit.includes(PROVIDED_HOST_KEY), () => false);
      installsHostKey.set(key, known);
    }
    return known;
  }

  #guestEnv(): string {
    const d = this.#deps;
    return renderGuestEnv({
      vmId: this.vm.id,
      vmName: this.vm.name,
      hostname: this.vm.name,
      guestIp: `${this.vm.guestIp}/${d.net.prefixLength}`,
      gateway: d.net.gateway,
      dns: [d.config.defaultDns],
    });
  }

  async #rollback(done: Step[], failed: Step, cause: unknown): Promise<void> {
    const errors: unknown[] = [];
    for (const step of [...done].reverse()) {
      try {
        await step.undo?.();
      } catch (err) {
        errors.push(err);
      }
    }
    const undoError = aggregateErrors("undo failed", errors);
    if (undoError) {
      this.#ctx.log.error("start rollback incomplete", {
        vm: this.vm.name,
        error: undoError.message,
      });
    }
    this.#save({
      status: "error",
      lastError: {
        step: failed.name,
        message: errorMessage(cause) + (undoError ? ` (${undoError.message})` : ""),
        at: new Date().toISOString(),
        opId: this.#ctx.opId,
      },
    });
    this.#ctx.log.warn("vm start failed", {
      vm: this.vm.name,
      step: failed.name,
      error: errorMessage(cause),
    });
  }

  #save(
    changes: {
      status?: VmRecord["status"];
      startedAt?: string;
      lastError?: VmRecord["runtime"]["lastError"];
    },
  ): void {
    const runtime = { ...this.vm.runtime };
    if ("startedAt" in changes) runtime.startedAt = changes.startedAt;
    if ("lastError" in changes) {
      if (changes.lastError) runtime.lastError = changes.lastError;
      else delete runtime.lastError;
    }
    this.vm = {
      ...this.vm,
      status: changes.status ?? this.vm.status,
      runtime,
      updatedAt: new Date().toISOString(),
    };
    saveVm(this.#deps.store, this.vm);
  }
}
