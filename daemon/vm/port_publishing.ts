/**
 * Publishing a VM's ports while it exists: `vm port publish|unpublish|list` change the
 * publications in the VM's spec under its lock, and open or close their listeners at
 * once when it runs (a stopped VM's open at its next start, in the `ports` start step).
 *
 * @module
 */

import { listVms, saveVm, type VmRecord } from "../../store/vms.ts";
import type { PublishedPortView } from "../api/vm.ts";
import { type PortPublication, PublishError, sameHostPort } from "../network/published_ports.ts";
import type { OpContext } from "../rpc/server.ts";
import type { VmDeps } from "./deps.ts";
import { checkPublications } from "./spec.ts";
import type { KeyedLock } from "../locks.ts";

/** What publishing needs of the VM service: finding a VM and taking its lock. */
export interface VmLookup {
  find(ref: string): VmRecord;
  readonly vmLocks: KeyedLock;
}

/** A VM's publications as the API shows them. */
export function publishedView(
  vm: VmRecord,
  deps: VmDeps,
): { vm: string; ports: PublishedPortView[] } {
  const active = deps.net.ports.active(vm.id);
  return {
    vm: vm.name,
    ports: (vm.spec.publish ?? []).map((p) => ({
      address: p.address,
      host_port: p.hostPort,
      guest_port: p.guestPort,
      proto: p.proto,
      active: active.some((a) => sameHostPort(a, p)),
    })),
  };
}

/** Which of this daemon's other VMs publishes `p`'s host port, for a refusal. */
export function holderOf(deps: VmDeps, vmId: string, p: PortPublication): string | undefined {
  const other = listVms(deps.store).find((v) =>
    v.id !== vmId && (v.spec.publish ?? []).some((q) => sameHostPort(p, q)) &&
    deps.net.ports.active(v.id).length > 0
  );
  return other ? `VM "${other.name}"` : undefined;
}

/**
 * Adds a publication to VM `ref` (and opens it when the VM runs).
 *
 * @throws {PublishError} `invalid_argument` for a malformed or repeated one, `conflict`
 *   naming the holder when its host port is taken.
 */
export async function publishPort(
  vms: VmLookup,
  deps: VmDeps,
  ref: string,
  text: string,
  ctx: OpContext,
): Promise<VmRecord> {
  const id = vms.find(ref).id;
  using _vm = await vms.vmLocks.acquire(id, ctx.signal);
  const vm = vms.find(id);
  const [p] = checkPublications([text]);
  if ((vm.spec.publish ?? []).some((q) => sameHostPort(p, q))) {
    throw new PublishError(
      `Cannot publish ${text} for "${vm.name}": it already publishes that host port`,
      {
        code: "conflict",
        hint: `banger vm port unpublish ${vm.name} ${p.hostPort}`,
      },
    );
  }
  if (vm.status === "running") await deps.net.ports.open(vm, [p], (q) => holderOf(deps, vm.id, q));
  const next = {
    ...vm,
    spec: { ...vm.spec, publish: [...(vm.spec.publish ?? []), p] },
    updatedAt: new Date().toISOString(),
  };
  saveVm(deps.store, next);
  return next;
}

/**
 * Removes VM `ref`'s publication of `hostPort` (any protocol unless given) and closes it.
 *
 * @throws {PublishError} `not_found` when it publishes no such port.
 */
export async function unpublishPort(
  vms: VmLookup,
  deps: VmDeps,
  ref: string,
  hostPort: number,
  proto: "tcp" | "udp" | undefined,
  ctx: OpContext,
): Promise<VmRecord> {
  const id = vms.find(ref).id;
  using _vm = await vms.vmLocks.acquire(id, ctx.signal);
  const vm = vms.find(id);
  const matches = (p: PortPublication) => p.hostPort === hostPort && (!proto || p.proto === proto);
  const kept = (vm.spec.publish ?? []).filter((p) => !matches(p));
  if (kept.length === (vm.spec.publish ?? []).length) {
    throw new PublishError(
      `Cannot unpublish port ${hostPort} of "${vm.name}": it is not published`,
      {
        code: "not_found",
        hint: `banger vm port list ${vm.name}`,
      },
    );
  }
  deps.net.ports.close(vm.id, matches);
  const next = { ...vm, spec: { ...vm.spec, publish: kept }, updatedAt: new Date().toISOString() };
  saveVm(deps.store, next);
  return next;
}
