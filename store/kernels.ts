/**
 * Kernel rows: a published kernel directory (`vmlinux`, optional `initrd.img`,
 * `manifest.json`) under `kernels/<name>/`.
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import type { Store } from "./db.ts";

/** Where a kernel came from. */
export type KernelSource =
  | { kind: "catalog"; url: string; sha256: string }
  | { kind: "debian"; package: string; version: string }
  | { kind: "import"; from: string };

/** A published kernel. */
export interface KernelRecord {
  /** Unique name, e.g. `debian-6.1-cloud`. */
  name: string;
  /** Absolute path of its directory. */
  dir: string;
  /** Absolute path of the ELF `vmlinux`. */
  vmlinux: string;
  /** Absolute path of the initrd, when it has one. */
  initrd?: string;
  /** Kernel release, e.g. `6.1.0-56-cloud-amd64`. */
  version: string;
  arch: string;
  /** sha256 of `vmlinux`. */
  sha256: string;
  source: KernelSource;
  createdAt: string;
}

type Spec = Omit<KernelRecord, "name" | "createdAt">;

interface Row {
  name: string;
  spec_json: string;
  created_at: string;
}

function fromRow(row: Row): KernelRecord {
  const spec = JSON.parse(row.spec_json) as Spec;
  return { name: row.name, ...spec, createdAt: row.created_at };
}

/** Inserts or replaces a kernel row. Runs inside the caller's write transaction. */
export function upsertKernel(db: DatabaseSync, k: KernelRecord): void {
  const { name, createdAt, ...spec } = k;
  db.prepare(`INSERT INTO kernels (name, spec_json, created_at) VALUES (?, ?, ?)
    ON CONFLICT(name) DO UPDATE SET spec_json = excluded.spec_json`)
    .run(name, JSON.stringify(spec), createdAt);
}

/** The kernel named `name`, if any. */
export function getKernel(store: Store, name: string): KernelRecord | undefined {
  const row = store.read((db) =>
    db.prepare("SELECT name, spec_json, created_at FROM kernels WHERE name = ?").get(name)
  ) as Row | undefined;
  return row ? fromRow(row) : undefined;
}

/** Every kernel, by name. */
export function listKernels(store: Store): KernelRecord[] {
  const rows = store.read((db) =>
    db.prepare("SELECT name, spec_json, created_at FROM kernels ORDER BY name").all()
  ) as unknown as Row[];
  return rows.map(fromRow);
}

/** Names of images that use the kernel. */
export function imagesUsingKernel(db: DatabaseSync, name: string): string[] {
  return (db.prepare("SELECT name FROM images WHERE kernel_name = ? ORDER BY name").all(name) as {
    name: string;
  }[]).map((r) => r.name);
}

/** Deletes the kernel row; returns whether one existed. */
export function deleteKernel(db: DatabaseSync, name: string): boolean {
  return Number(db.prepare("DELETE FROM kernels WHERE name = ?").run(name).changes) > 0;
}
