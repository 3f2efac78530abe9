/**
 * Stopping, killing and tearing down a VM. A stop first has the guest `sync` and `reboot`
 * over SSH (with `reboot=k`, a guest reboot ends the VMM), so nothing written in the guest
 * is lost; only then does the driver escalate (Ctrl+Alt+Del or the QEMU monitor, then
 * SIGKILL), each step bounded. Teardown always runs every step and reports every failure
 * together (DESIGN.md invariant 7); a handle whose release failed stays recorded so a
 * later teardown or reconcile retries it.
 *
 * Runs under the VM's lock.
 *
 * @module
 */

import { aggregateErrors, errorMessage } from "../../host/errors.ts";
import type { RootDiskHandle } from "../../host/disk/rootdisk.ts";
import { saveVm, type VmRecord } from "../../store/vms.ts";
import type { OpContext } from "../rpc/server.ts";
import type { VmDeps } from "./deps.ts";
import type { GuestRef } from "./guest_access.ts";

const SYNC_TIMEOUT_MS = 20_000;
const REBOOT_WAIT_MS = 30_000;
const GUEST_SYNC_AND_REBOOT =
  "sync || exit 1; (sleep 0.3; reboot || systemctl reboot -ff) >/dev/null 2>&1 </dev/null &";
const KILL_WAIT_MS = 10_000;

/** The identity GuestAccess needs. */
export function guestRef(vm: VmRecord): GuestRef {
  return { id: vm.id, name: vm.name, guestIp: vm.guestIp, vmDir: vm.runtime.vmDir };
}

/**
 * Stops a VM gracefully and releases its host resources; disks are kept.
 *
 * @throws {BangerError} listing every teardown step that failed (the VM is then `error`).
 */
export async function stopVm(vm: VmRecord, deps: VmDeps, ctx: OpContext): Promise<VmRecord> {
  vm = setStatus(vm, "stopping", deps);
  const pid = (await deps.handles.read(vm)).pid;
  const driver = deps.driver(vm.spec.vmm);
  if (pid !== undefined && (await driver.alive(pid, vm.runtime.vmDir))) {
    ctx.progress("sync", `Syncing and rebooting ${vm.name}`);
    let synced = false;
    if (vm.runtime.guestSsh !== false) {
      try {
        // sync first, in the foreground; only then the reboot that ends the VMM, detached
        // so ssh returns (the Go tool lost workspace data by killing before the sync).
        const res = await deps.guest.exec(guestRef(vm), ["sh", "-c", GUEST_SYNC_AND_REBOOT], {
          timeoutMs: SYNC_TIMEOUT_MS,
        });
        synced = res.code === 0;
      } catch (err) {
        ctx.log.warn("guest sync over ssh failed; escalating", {
          vm: vm.name,
          error: errorMessage(err),
        });
      }
    }
    ctx.progress("vmm_stop", `Waiting for ${vm.spec.vmm} to exit`);
    // A synced guest is rebooting: give it time. One we could not reach gets the VMM's
    // own shutdown path (Ctrl+Alt+Del, which has the guest sync too) straight away.
    const how = await driver.stop(pid, vm.runtime.vmDir, {
      exitWaitMs: synced ? REBOOT_WAIT_MS : 0,
      signal: ctx.signal,
    });
    ctx.log.info("vmm stopped", { vm: vm.name, ended_by: how });
  }
  return await finishStopped(vm, deps, ctx, "stop");
}

/** Sends `signal` to the VMM now, then tears down: the VM ends `stopped`. */
export async function killVm(
  vm: VmRecord,
  deps: VmDeps,
  ctx: OpContext,
  signal: string,
): Promise<VmRecord> {
  const pid = (await deps.handles.read(vm)).pid;
  const driver = deps.driver(vm.spec.vmm);
  if (pid !== undefined && (await driver.alive(pid, vm.runtime.vmDir))) {
    await driver.kill(pid, vm.runtime.vmDir, signal);
    if (!(await driver.waitExit(pid, vm.runtime.vmDir, KILL_WAIT_MS))) {
      await driver.kill(pid, vm.runtime.vmDir, "SIGKILL");
      await driver.waitExit(pid, vm.runtime.vmDir, KILL_WAIT_MS);
    }
  }
  return await finishStopped(vm, deps, ctx, "kill");
}

async function finishStopped(
  vm: VmRecord,
  deps: VmDeps,
  ctx: OpContext,
  verb: string,
): Promise<VmRecord> {
  const { vm: after, error } = await teardownVm(vm, deps, ctx);
  if (error) {
    setStatus(after, "error", deps, {
      step: "teardown",
      message: error.message,
      at: new Date().toISOString(),
      opId: ctx.opId,
    });
    ctx.log.error(`vm ${verb} teardown incomplete`, { vm: vm.name, error: error.message });
    throw error;
  }
  const stopped = { ...after, runtime: { ...after.runtime, stoppedAt: new Date().toISOString() } };
  return setStatus(stopped, "stopped", deps);
}

/**
 * Releases everything a start acquired, from the persisted handles: VMM (killed if it
 * still runs), DNS record, NAT rules, tap, root disk. Every step runs; failures are
 * returned together.
 */
export async function teardownVm(
  vm: VmRecord,
  deps: VmDeps,
  ctx: OpContext,
  options: { deleteFiles?: boolean } = {},
): Promise<{ vm: VmRecord; error?: Error }> {
  const errors: unknown[] = [];
  const attempt = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      errors.push(new Error(`${what}: ${errorMessage(err)}`));
    }
  };
  const h = await deps.handles.read(vm);
  const driver = deps.driver(vm.spec.vmm);
  const dir = vm.runtime.vmDir;
  let vmmGone = false;
  await attempt("vmm", async () => {
    const pid = h.pid ?? await driver.findPid(dir);
    if (pid !== undefined && (await driver.alive(pid, dir))) {
      await driver.kill(pid, dir, "SIGKILL");
      await driver.waitExit(pid, dir, KILL_WAIT_MS);
    }
    await driver.cleanup(dir);
    await deps.guest.closeMaster(guestRef(vm));
    vm = await deps.handles.update(vm, { pid: undefined });
    vmmGone = true;
  });
  deps.net.dns.remove(vm.name);
  deps.net.ports.close(vm.id);
  await attempt("nat", async () => {
    if (h.natInstalled || vm.spec.nat) await deps.net.removeNat(vm.id);
    vm = await deps.handles.update(vm, { natInstalled: undefined });
  });
  await attempt("tap", async () => {
    // A VMM that may still run still holds its tap: it must never reach another VM.
    if (h.tap && !vmmGone) throw new Error(`kept ${h.tap}: its VMM may still hold it`);
    if (h.tap) {
      await deps.net.unguard(vm.id);
      await deps.net.taps.release(h.tap);
    }
    vm = await deps.handles.update(vm, { tap: undefined });
  });
  await attempt("root disk", async () => {
    if (h.rootDisk) {
      await deps.ops.releaseRootDisk({
        handle: h.rootDisk as RootDiskHandle,
        deleteFiles: options.deleteFiles ?? false,
      });
    }
    vm = await deps.handles.update(vm, { rootDisk: undefined });
  });
  const error = aggregateErrors(`Cannot fully release VM "${vm.name}"`, errors);
  if (error) ctx.log.warn("teardown incomplete", { vm: vm.name, error: error.message });
  return { vm, error };
}

function setStatus(
  vm: VmRecord,
  status: VmRecord["status"],
  deps: VmDeps,
  lastError?: VmRecord["runtime"]["lastError"],
): VmRecord {
  const runtime = { ...vm.runtime };
  if (lastError) runtime.lastError = lastError;
  else if (status === "stopped") delete runtime.lastError;
  const next = { ...vm, status, runtime, updatedAt: new Date().toISOString() };
  saveVm(deps.store, next);
  return next;
}
