/**
 * Image rows: a root filesystem (`rootfs.ext4`) plus the kernel it boots with — either a
 * kernel row (`kernel_name`) or explicit kernel files (registered images).
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import type { Store } from "./db.ts";

/** Where an image came from. */
export type ImageSource =
  | { kind: "catalog"; url: string; sha256: string }
  | { kind: "golden"; recipe: string }
  | { kind: "oci"; ref: string; digest: string }
  | { kind: "register" }
  | { kind: "promote"; from: string };

/** A usable image. */
export interface ImageRecord {
  /** Random hex id. */
  id: string;
  /** Unique name, a DNS label. */
  name: string;
  /** The kernel row it boots with, when not explicit files. */
  kernelName?: string;
  /** Explicit kernel files (registered images). */
  kernelFiles?: { vmlinux: string; initrd?: string };
  /** Absolute path of `rootfs.ext4`. */
  rootfs: string;
  /** Its directory when banger owns the files (`images/<name>/`); unset when registered. */
  dir?: string;
  /** Size of `rootfs.ext4` in bytes. */
  sizeBytes: number;
  source: ImageSource;
  /** The guest pieces (network bootstrap, agent, sshd drop-in) are installed. */
  hasGuestPieces: boolean;
  /** Kernel `init=` to boot with (pulled OCI images boot through banger's first-boot). */
  init?: string;
  description?: string;
  createdAt: string;
  updatedAt: string;
}

type Spec = Omit<ImageRecord, "id" | "name" | "kernelName" | "createdAt" | "updatedAt">;

interface Row {
  id: string;
  name: string;
  kernel_name: string | null;
  spec_json: string;
  created_at: string;
  updated_at: string;
}

const COLUMNS = "id, name, kernel_name, spec_json, created_at, updated_at";

function fromRow(row: Row): ImageRecord {
  const spec = JSON.parse(row.spec_json) as Spec;
  return {
    id: row.id,
    name: row.name,
    ...(row.kernel_name ? { kernelName: row.kernel_name } : {}),
    ...spec,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** Inserts or replaces (by name) an image row. Runs inside the caller's write transaction. */
export function upsertImage(db: DatabaseSync, image: ImageRecord): void {
  const { id, name, kernelName, createdAt, updatedAt, ...spec } = image;
  db.prepare(`INSERT INTO images (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT(name) DO UPDATE SET kernel_name = excluded.kernel_name,
      spec_json = excluded.spec_json, updated_at = excluded.updated_at`)
    .run(id, name, kernelName ?? null, JSON.stringify(spec), createdAt, updatedAt);
}

/** The image named exactly `name`. */
export function getImageByName(store: Store | DatabaseSync, name: string): ImageRecord | undefined {
  const run = (db: DatabaseSync) =>
    db.prepare(`SELECT ${COLUMNS} FROM images WHERE name = ?`).get(name) as Row | undefined;
  const row = "read" in store ? store.read(run) : run(store);
  return row ? fromRow(row) : undefined;
}

/** The image with id `id`. */
export function getImageById(store: Store, id: string): ImageRecord | undefined {
  const row = store.read((db) =>
    db.prepare(`SELECT ${COLUMNS} FROM images WHERE id = ?`).get(id)
  ) as Row | undefined;
  return row ? fromRow(row) : undefined;
}

/** Every image, by name. */
export function listImages(store: Store): ImageRecord[] {
  const rows = store.read((db) =>
    db.prepare(`SELECT ${COLUMNS} FROM images ORDER BY name`).all()
  ) as unknown as Row[];
  return rows.map(fromRow);
}

/** Names of VMs using the image. */
export function vmsUsingImage(db: DatabaseSync, imageId: string): string[] {
  return (db.prepare("SELECT name FROM vms WHERE image_id = ? ORDER BY name").all(imageId) as {
    name: string;
  }[]).map((r) => r.name);
}

/** Deletes the image row; returns whether one existed. */
export function deleteImage(db: DatabaseSync, id: string): boolean {
  return Number(db.prepare("DELETE FROM images WHERE id = ?").run(id).changes) > 0;
}
