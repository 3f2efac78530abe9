/**
 * The VM lifecycle: create in three phases (resolve with no global lock; reserve under
 * one short lock; boot under the VM's own lock — DESIGN.md invariant 1), and the verbs
 * start, stop, restart, kill, delete, prune and set. Verbs take several refs, resolved
 * from one snapshot, deduplicated and run concurrently; results come back in the order
 * given.
 *
 * Allowed statuses per verb:
 * - start: created, stopped, error
 * - stop, restart: running (restart also starts a stopped VM)
 * - kill: any (the VM ends stopped with its disks released)
 * - delete: any (a running VM is stopped first)
 * - set: created, stopped, error
 *
 * @module
 */

import { BangerError, errorMessage } from "../../host/errors.ts";
import { vmsDir } from "../../host/layout.ts";
import { guestMac, parseIpv4 } from "../../host/net/ipv4.ts";
import {
  deleteVm,
  getVm,
  getVmByName,
  insertVm,
  listVms,
  saveVm,
  usedAddresses,
  type VmRecord,
  type WorkspaceRecord,
} from "../../store/vms.ts";
import { randomId } from "../image/image_service.ts";
import { KeyedLock, Mutex } from "../locks.ts";
import type { OpContext } from "../rpc/server.ts";
import {
  buildSpec,
  checkMemory,
  checkSize,
  checkVcpu,
  generateVmName,
  resolveVmRef,
  type SpecRequest,
  validateVmName,
} from "./spec.ts";
import type { VmDeps } from "./deps.ts";
import { startVm } from "./start.ts";
import { guestRef, killVm, stopVm, teardownVm } from "./stop.ts";

/** A VM in the wrong state for a verb. */
export class VmStateError extends BangerError {}

/** A create request. */
export interface CreateRequest extends SpecRequest {
  name?: string;
  image?: string;
  no_start?: boolean;
  /** Delete the VM when its boot fails or is cancelled, instead of keeping it in `error`. */
  remove_on_failure?: boolean;
}

/** Outcome of one ref of a bulk verb. */
export interface BulkOutcome {
  ref: string;
  vm?: VmRecord;
  error?: unknown;
}

/**
 * Throws {@linkcode VmStateError} unless `vm.status` is one of `allowed`.
 *
 * @example
 * ```ts
 * assertStatus(vm, ["running"], "stop"); // Cannot stop "dev": VM is stopped
 * ```
 */
export function assertStatus(
  vm: VmRecord,
  allowed: readonly VmRecord["status"][],
  verb: string,
): void {
  if (allowed.includes(vm.status)) return;
  const hint = vm.status === "running"
    ? `banger vm stop ${vm.name}`
    : vm.status === "stopped" || vm.status === "created" || vm.status === "error"
    ? `banger vm start ${vm.name}`
    : undefined;
  throw new VmStateError(`Cannot ${verb} "${vm.name}": VM is ${vm.status}`, {
    code: "conflict",
    hint,
  });
}

/** Owns VM rows, their locks and lifecycle. */
export class VmService {
  // vm[id]: held for a whole lifecycle verb; different VMs never wait on each other.
  readonly vmLocks = new KeyedLock("VM");
  // create: the reservation window only (name uniqueness, IP and CID); after vm[id].
  readonly #create = new Mutex("create reservation");
  readonly #deps: VmDeps;

  constructor(deps: VmDeps) {
    this.#deps = deps;
  }

  /** Every VM. */
  list(): VmRecord[] {
    return listVms(this.#deps.store);
  }

  /** The VM `ref` names (exact name, else a unique id/name prefix). */
  find(ref: string): VmRecord {
    return resolveVmRef(this.list(), ref);
  }

  /**
   * Runs `fn` on the current row of the VM `ref` names, under that VM's lock: for
   * validating and snapshotting fields only, never guest I/O (DESIGN.md invariant 5).
   *
   * @throws {VmStateError} `not_found` when the VM was deleted meanwhile; whatever `fn` throws.
   */
  async withVm<T>(
    ref: string,
    signal: AbortSignal | undefined,
    fn: (vm: VmRecord) => T,
  ): Promise<T> {
    const id = this.find(ref).id;
    using _vm = await this.vmLocks.acquire(id, signal);
    return fn(this.#fresh(id, ref));
  }

  /**
   * Records `workspace` on VM `id` (or clears it), under the VM's lock. Any status: the
   * workspace lives on the work disk, which outlives a stop.
   *
   * @throws {VmStateError} `not_found` when the VM was deleted meanwhile.
   */
  async recordWorkspace(
    id: string,
    workspace: WorkspaceRecord | undefined,
    signal?: AbortSignal,
  ): Promise<VmRecord> {
    using _vm = await this.vmLocks.acquire(id, signal);
    const next = { ...this.#fresh(id, id), workspace, updatedAt: new Date().toISOString() };
    saveVm(this.#deps.store, next);
    return next;
  }

  #fresh(id: string, ref: string): VmRecord {
    const vm = getVm(this.#deps.store, id);
    if (!vm) {
      throw new VmStateError(`Cannot find VM "${ref}": it was deleted`, { code: "not_found" });
    }
    return vm;
  }

  /**
   * Creates (and unless `no_start`, boots) a VM.
   *
   * @throws {VmSpecError} for a bad name or spec (nothing is created).
   * @throws {VmStateError} `conflict` when the name is taken.
   */
  async create(req: CreateRequest, ctx: OpContext): Promise<VmRecord> {
    const d = this.#deps;
    if (req.name !== undefined) validateVmName(req.name);
    const spec = buildSpec(req, d.config.vmDefaults, d.defaultVmm);
    ctx.progress("resolve", "Resolving the image and kernel");
    const image = await d.images.resolve(req.image ?? d.config.defaultImageName, ctx);
    if (image.kernelName) await d.kernels.resolve(image.kernelName, ctx);

    let vm: VmRecord;
    {
      using _reserve = await this.#create.acquire(ctx.signal);
      vm = d.store.write((db) => {
        const name = req.name ?? uniqueName(db);
        if (getVmByName(db, name)) {
          throw new VmStateError(`Cannot create VM "${name}": a VM with that name exists`, {
            code: "conflict",
            hint: `pick another --name, or: banger vm delete ${name}`,
          });
        }
        const used = usedAddresses(db);
        const guestIp = d.net.allocateIp(used.ips);
        // The instance's own CID block: vhost-vsock CIDs are host-wide, so two instances
        // (or their VMs beside other VMs, which start at 3) never clash.
        let cid = d.instance.firstCid;
        while (used.cids.has(cid)) cid++;
        const id = randomId();
        const now = new Date().toISOString();
        const record: VmRecord = {
          id,
          name,
          status: "created",
          imageId: image.id,
          guestIp,
          vsockCid: cid,
          spec,
          runtime: {
            vmDir: `${vmsDir(d.layout)}/${id}`,
            mac: guestMac(parseIpv4(guestIp) ?? 0),
            dnsName: `${name}.vm`,
          },
          createdAt: now,
          updatedAt: now,
        };
        insertVm(db, record);
        return record;
      });
    }
    ctx.log.info("vm reserved", { vm: vm.name, id: vm.id, ip: vm.guestIp, vmm: spec.vmm });
    ctx.progress(
      "reserved",
      `Reserved ${vm.name} (${vm.guestIp}, ${spec.vcpu} vcpu, ${spec.memoryMib} MiB, ${spec.vmm})`,
    );
    await Deno.mkdir(vm.runtime.vmDir, { recursive: true, mode: 0o700 });
    if (req.no_start) return vm;
    try {
      using _vm = await this.vmLocks.acquire(vm.id, ctx.signal);
      return await startVm(vm, d, ctx);
    } catch (err) {
      if (req.remove_on_failure) await this.#removeAfterFailedBoot(vm.id, ctx);
      throw err;
    }
  }

  /**
   * Deletes a VM whose boot just failed or was cancelled (`vm run --rm`). Runs even when
   * the request was cancelled: that is when the user asked for it.
   */
  async #removeAfterFailedBoot(id: string, ctx: OpContext): Promise<void> {
    const cleanup: OpContext = { ...ctx, signal: new AbortController().signal };
    try {
      using _vm = await this.vmLocks.acquire(id, cleanup.signal);
      const vm = getVm(this.#deps.store, id);
      if (vm) await this.#delete(vm, cleanup);
    } catch (err) {
      ctx.log.warn("could not remove the VM after its failed boot", { id, error: String(err) });
    }
  }

  /** Boots stopped VMs. */
  start(refs: readonly string[], ctx: OpContext): Promise<BulkOutcome[]> {
    return this.#bulk(refs, ctx, (vm) => {
      assertStatus(vm, ["created", "stopped", "error"], "start");
      return startVm(vm, this.#deps, ctx);
    });
  }

  /** Stops running VMs (disks kept). */
  stop(refs: readonly string[], ctx: OpContext): Promise<BulkOutcome[]> {
    return this.#bulk(refs, ctx, (vm) => {
      assertStatus(vm, ["running"], "stop");
      return stopVm(vm, this.#deps, ctx);
    });
  }

  /** Stops then starts VMs (a stopped VM is just started). */
  restart(refs: readonly string[], ctx: OpContext): Promise<BulkOutcome[]> {
    return this.#bulk(refs, ctx, async (vm) => {
      assertStatus(vm, ["running", "stopped", "created", "error"], "restart");
      const stopped = vm.status === "running" ? await stopVm(vm, this.#deps, ctx) : vm;
      return await startVm(stopped, this.#deps, ctx);
    });
  }

  /** Signals VMMs now; the VMs end stopped with their disks released. */
  kill(refs: readonly string[], signal: string, ctx: OpContext): Promise<BulkOutcome[]> {
    return this.#bulk(refs, ctx, (vm) => killVm(vm, this.#deps, ctx, signal));
  }

  /**
   * Deletes VMs: stops running ones (or, with `refuseRunning`, refuses them), then removes
   * disks, DNS, NAT and known_hosts entries.
   */
  delete(
    refs: readonly string[],
    ctx: OpContext,
    options: { refuseRunning?: boolean } = {},
  ): Promise<BulkOutcome[]> {
    return this.#bulk(refs, ctx, (vm) => {
      if (options.refuseRunning && (vm.status === "running" || vm.status === "starting")) {
        throw new VmStateError(`Cannot delete "${vm.name}": VM is ${vm.status}`, {
          code: "conflict",
          hint: `banger vm stop ${vm.name}, or banger vm delete -f ${vm.name}`,
        });
      }
      return this.#delete(vm, ctx);
    });
  }

  /** Deletes every VM that is not running; returns their names. */
  async prune(ctx: OpContext): Promise<string[]> {
    const candidates = this.list().filter((v) => v.status !== "running" && v.status !== "starting");
    const outcomes = await this.#bulk(candidates.map((v) => v.id), ctx, async (vm) => {
      if (vm.status === "running" || vm.status === "starting") return vm; // started meanwhile
      return await this.#delete(vm, ctx);
    });
    const failed = outcomes.filter((o) => o.error);
    if (failed.length) {
      throw new BangerError(
        `Cannot prune ${failed.length} VM(s): ${
          failed.map((f) => errorMessage(f.error)).join("; ")
        }`,
      );
    }
    return outcomes.filter((o) => o.vm && o.vm.status !== "running").map((o) =>
      o.vm?.name ?? o.ref
    );
  }

  /** Changes vCPUs, memory, NAT, or grows the work disk, of stopped VMs. */
  set(
    refs: readonly string[],
    req: {
      vcpu?: number;
      memory_mib?: number;
      disk_size?: string;
      system_overlay_size?: string;
      nat?: boolean;
    },
    ctx: OpContext,
  ): Promise<BulkOutcome[]> {
    return this.#bulk(refs, ctx, async (vm) => {
      assertStatus(vm, ["created", "stopped", "error"], "change");
      const spec = { ...vm.spec };
      if (req.vcpu !== undefined) spec.vcpu = checkVcpu(req.vcpu);
      if (req.memory_mib !== undefined) spec.memoryMib = checkMemory(req.memory_mib);
      if (req.nat !== undefined) spec.nat = req.nat;
      if (req.disk_size !== undefined) {
        const bytes = checkSize("--disk-size", req.disk_size);
        if (bytes < vm.spec.diskBytes) {
          throw new VmStateError(
            `Cannot shrink the disk of "${vm.name}" from ${vm.spec.diskBytes} to ${bytes} bytes`,
            {
              code: "invalid_argument",
              hint: "disks only grow",
            },
          );
        }
        const disk = `${vm.runtime.vmDir}/work.ext4`;
        if (bytes > vm.spec.diskBytes && (await exists(disk))) {
          await this.#deps.ops.growExt4({ image: disk, sizeBytes: bytes });
        }
        spec.diskBytes = bytes;
      }
      if (req.system_overlay_size !== undefined) {
        const bytes = checkSize("--system-overlay-size", req.system_overlay_size);
        if (bytes < vm.spec.overlayBytes) {
          throw new VmStateError(
            `Cannot shrink the root disk of "${vm.name}" from ${vm.spec.overlayBytes} to ${bytes} bytes`,
            { code: "invalid_argument", hint: "disks only grow" },
          );
        }
        // The next start grows the disk (sparse) and the guest grows / to it at boot.
        spec.overlayBytes = bytes;
      }
      const next = { ...vm, spec, updatedAt: new Date().toISOString() };
      saveVm(this.#deps.store, next);
      return next;
    });
  }

  async #delete(vm: VmRecord, ctx: OpContext): Promise<VmRecord> {
    const d = this.#deps;
    if (vm.status === "running") vm = await stopVm(vm, d, ctx);
    const { error } = await teardownVm(vm, d, ctx, { deleteFiles: true });
    if (error) throw error;
    await d.guest.forget(guestRef(vm));
    await Deno.remove(vm.runtime.vmDir, { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
    deleteVm(d.store, vm.id);
    d.handles.drop(vm.id);
    ctx.log.info("vm deleted", { vm: vm.name, id: vm.id });
    return { ...vm, status: "stopped" };
  }

  async #bulk(
    refs: readonly string[],
    ctx: OpContext,
    fn: (vm: VmRecord) => Promise<VmRecord>,
  ): Promise<BulkOutcome[]> {
    const snapshot = this.list();
    const resolved = refs.map((ref) => {
      try {
        return { ref, vm: resolveVmRef(snapshot, ref) };
      } catch (error) {
        return { ref, error };
      }
    });
    const running = new Map<string, Promise<BulkOutcome>>();
    for (const r of resolved) {
      if (!r.vm || running.has(r.vm.id)) continue;
      const id = r.vm.id;
      running.set(
        id,
        (async () => {
          try {
            using _vm = await this.vmLocks.acquire(id, ctx.signal);
            const fresh = getVm(this.#deps.store, id);
            if (!fresh) {
              throw new VmStateError(`Cannot find VM "${r.ref}": it was deleted`, {
                code: "not_found",
              });
            }
            return { ref: r.ref, vm: await fn(fresh) };
          } catch (error) {
            return { ref: r.ref, error };
          }
        })(),
      );
    }
    return await Promise.all(resolved.map(async (r) => {
      if (!r.vm) return { ref: r.ref, error: r.error };
      const out = await running.get(r.vm.id);
      return { ...out, ref: r.ref } as BulkOutcome;
    }));
  }
}

function uniqueName(db: Parameters<typeof getVmByName>[0]): string {
  for (;;) {
    const name = generateVmName();
    if (!getVmByName(db, name)) return name;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
