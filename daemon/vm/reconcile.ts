/**
 * Reconcile at daemon start (DESIGN.md invariant 9): rebuild host state from the store.
 * A VM the store calls running whose VMM is alive is adopted (tap claimed, DNS record
 * published); one whose VMM is dead has its leftovers torn down from the persisted
 * handles and is marked stopped. Leftovers of VMs that are not running, NAT rules of
 * unknown VMs and idle taps are cleaned. Running it twice changes nothing: every step
 * starts from what is, not from what was remembered.
 *
 * @module
 */

import { errorMessage } from "../../host/errors.ts";
import type { RootDiskHandle } from "../../host/disk/rootdisk.ts";
import { listVms, saveVm, type VmRecord } from "../../store/vms.ts";
import type { OpContext } from "../rpc/server.ts";
import type { VmDeps } from "./deps.ts";
import { teardownVm } from "./stop.ts";

/** What reconcile did, for the log. */
export interface ReconcileReport {
  adopted: string[];
  cleaned: string[];
  orphanNat: string[];
  errors: string[];
}

const LIVE = new Set<VmRecord["status"]>(["starting", "running", "stopping"]);

/** Reconciles every VM, then host-wide orphans. */
export async function reconcile(deps: VmDeps, ctx: OpContext): Promise<ReconcileReport> {
  const report: ReconcileReport = { adopted: [], cleaned: [], orphanNat: [], errors: [] };
  const vms = listVms(deps.store);
  const inUseTaps: string[] = [];
  for (let vm of vms) {
    try {
      let h = await deps.handles.read(vm);
      const driver = deps.driver(vm.spec.vmm);
      const orphanPid = h.pid === undefined ? await driver.findPid(vm.runtime.vmDir) : undefined;
      if (orphanPid !== undefined) {
        // Launched, but the daemon died before recording it: record it now.
        vm = await deps.handles.update(vm, { pid: orphanPid });
        h = { ...h, pid: orphanPid };
      }
      const alive = h.pid !== undefined && (await driver.alive(h.pid, vm.runtime.vmDir));
      if (alive) {
        if (h.tap) inUseTaps.push(h.tap);
        if (vm.status !== "running") {
          saveVm(deps.store, { ...vm, status: "running", updatedAt: now() });
        }
        deps.net.dns.set(vm.name, vm.guestIp);
        if (h.natInstalled || vm.spec.nat) await deps.net.addNat(vm.id, vm.guestIp);
        if (h.tap) await deps.net.guard(vm, h.tap);
        if (vm.spec.publish?.length) {
          await deps.net.ports.open(vm, vm.spec.publish).catch((err) =>
            report.errors.push(`${vm.name}: ports: ${errorMessage(err)}`)
          );
        }
        report.adopted.push(vm.name);
        continue;
      }
      const hasLeftovers = h.pid !== undefined || h.tap !== undefined || h.rootDisk !== undefined ||
        h.natInstalled === true;
      if (!LIVE.has(vm.status) && !hasLeftovers) continue;
      const { vm: after, error } = await teardownVm(vm, deps, ctx);
      if (error) report.errors.push(error.message);
      if (LIVE.has(vm.status)) {
        saveVm(deps.store, {
          ...after,
          status: error ? "error" : "stopped",
          runtime: {
            ...after.runtime,
            stoppedAt: now(),
            ...(vm.status === "starting"
              ? {
                lastError: {
                  step: "reconcile",
                  message: "the daemon restarted during the start",
                  at: now(),
                },
              }
              : {}),
          },
          updatedAt: now(),
        });
      }
      report.cleaned.push(vm.name);
    } catch (err) {
      report.errors.push(`${vm.name}: ${errorMessage(err)}`);
    }
  }
  await cleanOrphans(deps, vms, inUseTaps, report);
  ctx.log.info("reconcile done", { ...report });
  return report;
}

async function cleanOrphans(
  deps: VmDeps,
  vms: VmRecord[],
  inUseTaps: string[],
  report: ReconcileReport,
): Promise<void> {
  const known = new Set(vms.map((v) => v.id));
  try {
    for (const id of await deps.net.natVmIds()) {
      if (known.has(id)) continue;
      await deps.net.removeNat(id);
      report.orphanNat.push(id);
    }
  } catch (err) {
    report.errors.push(`nat: ${errorMessage(err)}`);
  }
  try {
    for (const id of await deps.net.guardedVmIds()) {
      if (!known.has(id)) await deps.net.unguard(id);
    }
  } catch (err) {
    report.errors.push(`tap guards: ${errorMessage(err)}`);
  }
  try {
    await deps.net.taps.adopt(inUseTaps);
  } catch (err) {
    report.errors.push(`taps: ${errorMessage(err)}`);
  }
  try {
    const referenced = new Set<string>();
    for (const vm of vms) {
      const h = (await deps.handles.read(vm)).rootDisk as RootDiskHandle | undefined;
      for (const l of h?.loops ?? []) referenced.add(l.path);
    }
    for (const loop of await deps.ops.listLoops()) {
      if (!referenced.has(loop.path)) await deps.ops.detachLoop({ path: loop.path });
    }
  } catch (err) {
    report.errors.push(`loops: ${errorMessage(err)}`);
  }
}

function now(): string {
  return new Date().toISOString();
}
