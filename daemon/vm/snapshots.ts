/**
 * A VM's snapshots on disk: numbered generations `<vmDir>/snap/<n>/`, each valid only
 * once its `manifest.json` is written — last, atomically — so a snapshot cut short by a
 * crash is never taken for a whole one. A new generation is numbered above every one
 * present, so a memory file a restored VM still maps (kept until that VM exits) is never
 * overwritten by the next snapshot. The manifest records
 * what a restore must match (VMM and version, host kernel, CPU, shape, kernel, command
 * line); {@linkcode restoreProblem} says what differs.
 *
 * @module
 */

import * as s from "../../host/schema.ts";
import { writeJsonAtomic } from "../../host/os/atomic_file.ts";

const targetShape = {
  vmm: s.literal("firecracker", "qemu"),
  vmm_version: s.string({ min: 1 }),
  host_kernel: s.string({ min: 1 }),
  cpu_model: s.string(),
  vcpu: s.number({ int: true, min: 1 }),
  memory_mib: s.number({ int: true, min: 1 }),
  kernel: s.string({ min: 1 }),
  cmdline: s.string(),
};
/** What must be the same at restore as when the snapshot was taken. */
export const restoreTargetSchema = s.object(targetShape);
/** What a restore must match. */
export type RestoreTarget = s.Infer<typeof restoreTargetSchema>;
const TARGET_KEYS = Object.keys(targetShape) as (keyof RestoreTarget)[];

/** A committed snapshot's manifest. */
export const snapshotManifestSchema = s.object({
  generation: s.number({ int: true, min: 1 }),
  vm_id: s.string({ min: 1 }),
  created_at: s.string({ min: 1 }),
  /** Bytes of the state files, for `snapshot list` and free-space accounting. */
  bytes: s.number({ int: true, min: 0 }),
  target: restoreTargetSchema,
});
/** A committed snapshot's manifest. */
export type SnapshotManifest = s.Infer<typeof snapshotManifestSchema>;

/** One generation directory. */
export interface Generation {
  generation: number;
  dir: string;
}

const MANIFEST = "manifest.json";

/** `<vmDir>/snap`. Pure. */
export function snapshotsDir(vmDir: string): string {
  return `${vmDir}/snap`;
}

/**
 * Creates the next generation's directory: one above every generation present, complete
 * or not, so no file of an earlier one is ever written again. Racing callers each get
 * their own (`mkdir` decides).
 */
export async function allocateGeneration(vmDir: string): Promise<Generation> {
  const base = snapshotsDir(vmDir);
  await Deno.mkdir(base, { recursive: true, mode: 0o700 });
  for (let n = (await generations(vmDir)).at(-1) ?? 0;;) {
    n++;
    const dir = `${base}/${n}`;
    try {
      await Deno.mkdir(dir, { mode: 0o700 });
      return { generation: n, dir };
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
  }
}

/** Marks a generation whole: its state files are written and synced before this. */
export async function commitSnapshot(dir: string, manifest: SnapshotManifest): Promise<void> {
  await writeJsonAtomic(`${dir}/${MANIFEST}`, snapshotManifestSchema.parse(manifest));
}

/** The newest committed snapshot, or `undefined`; generations without a manifest are skipped. */
export async function latestSnapshot(
  vmDir: string,
): Promise<(Generation & { manifest: SnapshotManifest }) | undefined> {
  for (const generation of (await generations(vmDir)).reverse()) {
    const dir = `${snapshotsDir(vmDir)}/${generation}`;
    const manifest = await readManifest(dir);
    if (manifest) return { generation, dir, manifest };
  }
  return undefined;
}

/**
 * Removes every generation not in `keep` — incomplete ones included. A generation a
 * running restored VM maps must be in `keep`.
 */
export async function pruneSnapshots(vmDir: string, keep: readonly number[]): Promise<number[]> {
  const removed: number[] = [];
  for (const generation of await generations(vmDir)) {
    if (keep.includes(generation)) continue;
    await Deno.remove(`${snapshotsDir(vmDir)}/${generation}`, { recursive: true });
    removed.push(generation);
  }
  return removed;
}

/**
 * Why a snapshot taken for `was` cannot restore onto `now`, or `undefined` when it can.
 * Pure.
 *
 * @example
 * ```ts
 * restoreProblem(manifest.target, { ...manifest.target, vmm_version: "8.0.0" });
 * // 'the snapshot was taken with vmm_version "7.2.0", now "8.0.0"'
 * ```
 */
export function restoreProblem(was: RestoreTarget, now: RestoreTarget): string | undefined {
  for (const key of TARGET_KEYS) {
    const [a, b] = [was[key], now[key]];
    if (a !== b) {
      return `the snapshot was taken with ${key} ${JSON.stringify(a)}, now ${JSON.stringify(b)}`;
    }
  }
  return undefined;
}

async function generations(vmDir: string): Promise<number[]> {
  const out: number[] = [];
  try {
    for await (const e of Deno.readDir(snapshotsDir(vmDir))) {
      if (e.isDirectory && /^[1-9]\d*$/.test(e.name)) out.push(Number(e.name));
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort((a, b) => a - b);
}

async function readManifest(dir: string): Promise<SnapshotManifest | undefined> {
  try {
    return snapshotManifestSchema.parse(JSON.parse(await Deno.readTextFile(`${dir}/${MANIFEST}`)));
  } catch {
    // Missing or unreadable: the snapshot was never committed.
    return undefined;
  }
}
