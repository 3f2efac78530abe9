/**
 * A VM's runtime handles — VMM pid, tap, root disk, NAT — kept so teardown can always
 * find what a start acquired (DESIGN.md invariant 6): each change is written to the VM's
 * `handles.json` (atomically), then mirrored into its row, and only then into memory.
 * A crash leaves disk ahead of memory, never behind it.
 *
 * @module
 */

import { writeJsonAtomic } from "../../host/os/atomic_file.ts";
import { vmFiles } from "../../host/layout.ts";
import type { Store } from "../../store/db.ts";
import { saveVm, type VmRecord, type VmRuntime } from "../../store/vms.ts";

/** The handles of one VM. */
export type VmHandles = Pick<VmRuntime, "pid" | "tap" | "rootDisk" | "natInstalled">;

const KEYS = ["pid", "tap", "rootDisk", "natInstalled"] as const;

/** Reads, writes and caches handles. */
export class HandleStore {
  // guards nothing across awaits: each update writes disk, then row, then this cache.
  readonly #cache = new Map<string, VmHandles>();
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /**
   * The handles of `vm`: from memory, else `handles.json`, else the row's mirror (when
   * the file is missing or corrupt after a crash).
   */
  async read(vm: VmRecord): Promise<VmHandles> {
    const cached = this.#cache.get(vm.id);
    if (cached) return cached;
    try {
      const parsed = JSON.parse(await Deno.readTextFile(`${vm.runtime.vmDir}/${vmFiles.handles}`));
      if (typeof parsed === "object" && parsed !== null) return pick(parsed as VmHandles);
    } catch {
      // missing or torn: fall back to the row
    }
    return pick(vm.runtime);
  }

  /**
   * Records `changes` (a key set to `undefined` is cleared): handles.json, then the row,
   * then memory. Returns the updated record.
   */
  async update(vm: VmRecord, changes: Partial<VmHandles>): Promise<VmRecord> {
    const next = { ...(await this.read(vm)), ...changes };
    for (const k of KEYS) if (next[k] === undefined) delete next[k];
    await writeJsonAtomic(`${vm.runtime.vmDir}/${vmFiles.handles}`, next);
    const runtime: VmRuntime = { ...vm.runtime };
    for (const k of KEYS) delete runtime[k];
    const updated: VmRecord = {
      ...vm,
      runtime: { ...runtime, ...next },
      updatedAt: new Date().toISOString(),
    };
    saveVm(this.#store, updated);
    this.#cache.set(vm.id, next);
    return updated;
  }

  /** Forgets a deleted VM. */
  drop(id: string): void {
    this.#cache.delete(id);
  }
}

function pick(source: Partial<VmHandles>): VmHandles {
  const out: VmHandles = {};
  if (typeof source.pid === "number") out.pid = source.pid;
  if (typeof source.tap === "string") out.tap = source.tap;
  if (source.rootDisk !== undefined) out.rootDisk = source.rootDisk;
  if (source.natInstalled === true) out.natInstalled = true;
  return out;
}
