/**
 * The store's schema history: ordered, forward-only migrations. Each runs in its own
 * transaction and is recorded in `schema_migrations`. Never edit a released migration;
 * add the next one.
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";

/** One step of the schema history. */
export interface Migration {
  /** 1, 2, 3, … with no gaps. */
  version: number;
  /** What it does, recorded beside the version. */
  name: string;
  /** Applies the change. Runs inside a transaction the runner owns. */
  up(db: DatabaseSync): void;
}

/** Every migration this binary knows, in order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "baseline: kernels, images, vms",
    up(db) {
      db.exec(`
        CREATE TABLE kernels (
          name        TEXT PRIMARY KEY,
          spec_json   TEXT NOT NULL,
          created_at  TEXT NOT NULL
        ) STRICT;
        CREATE TABLE images (
          id          TEXT PRIMARY KEY,
          name        TEXT NOT NULL UNIQUE,
          kernel_name TEXT REFERENCES kernels(name) ON DELETE RESTRICT,
          spec_json   TEXT NOT NULL,
          created_at  TEXT NOT NULL,
          updated_at  TEXT NOT NULL
        ) STRICT;
        CREATE TABLE vms (
          id           TEXT PRIMARY KEY,
          name         TEXT NOT NULL UNIQUE,
          status       TEXT NOT NULL,
          image_id     TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
          guest_ip     TEXT NOT NULL UNIQUE,
          vsock_cid    INTEGER NOT NULL UNIQUE,
          spec_json    TEXT NOT NULL,
          runtime_json TEXT NOT NULL,
          created_at   TEXT NOT NULL,
          updated_at   TEXT NOT NULL
        ) STRICT;
        CREATE INDEX vms_image ON vms(image_id);
      `);
    },
  },
  {
    version: 2,
    name: "vms: workspace_json",
    up(db) {
      db.exec(`ALTER TABLE vms ADD COLUMN workspace_json TEXT`);
    },
  },
];

/** The newest schema version this binary understands. */
export const LATEST_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1].version;
