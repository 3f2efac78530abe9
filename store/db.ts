/**
 * Opening the SQLite store: pragmas, schema-state inspection, migrations, and the
 * read/write transaction helpers every repository uses.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { BangerError } from "../host/errors.ts";
import { LATEST_VERSION, type Migration, MIGRATIONS } from "./migrations.ts";

/** A store failure: schema mismatch, constraint violation, unreadable row. */
export class StoreError extends BangerError {}

/** How a database file relates to this binary's schema. */
export type SchemaState =
  | { kind: "missing" }
  | { kind: "current"; version: number }
  | { kind: "behind"; version: number; latest: number }
  | { kind: "newer"; version: number; latest: number };

const BUSY_TIMEOUT_MS = 5000;

/** Options for {@linkcode Store.open}. */
export interface OpenOptions {
  /** The migrations to apply; tests pass a prefix to build old databases. @default {MIGRATIONS} */
  migrations?: readonly Migration[];
}

/**
 * The banger database. Writes go through {@linkcode Store.write} (`BEGIN IMMEDIATE`, so a
 * writer never upgrades a read lock and hits `database is locked`).
 */
export class Store {
  readonly #db: DatabaseSync;
  readonly readOnly: boolean;

  private constructor(db: DatabaseSync, readOnly: boolean) {
    this.#db = db;
    this.readOnly = readOnly;
  }

  /**
   * Opens (creating if needed) and migrates the store at `path`.
   *
   * A database written by a newer banger is refused before anything is written to it.
   *
   * @throws {StoreError} when the schema is newer than this binary or a migration fails.
   * @example
   * ```ts
   * using store = Store.open("/state/banger.db");
   * ```
   */
  static open(path: string, options: OpenOptions = {}): Store {
    const migrations = options.migrations ?? MIGRATIONS;
    const latest = migrations.length ? migrations[migrations.length - 1].version : 0;
    const state = inspectSchema(path, latest);
    if (state.kind === "newer") throw newerError(path, state.version, state.latest);
    const db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS });
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = NORMAL");
      db.exec("PRAGMA foreign_keys = ON");
      const store = new Store(db, false);
      store.#migrate(migrations);
      return store;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /**
   * Opens an existing store without writing anything, for `doctor`.
   *
   * @throws {StoreError} when the file is missing or unreadable.
   */
  static openReadOnly(path: string): Store {
    try {
      const db = new DatabaseSync(path, { readOnly: true, timeout: BUSY_TIMEOUT_MS });
      return new Store(db, true);
    } catch (err) {
      throw new StoreError(`Cannot open the store "${path}" read-only: ${message(err)}`, {
        cause: err,
      });
    }
  }

  /** The schema version recorded in this database (0 when none). */
  version(): number {
    return recordedVersion(this.#db);
  }

  /** Runs `fn` for reading. Reads are consistent within one statement. */
  read<T>(fn: (db: DatabaseSync) => T): T {
    return fn(this.#db);
  }

  /**
   * Runs `fn` inside `BEGIN IMMEDIATE … COMMIT`, rolling back when it throws.
   *
   * @throws {StoreError} when the store was opened read-only.
   */
  write<T>(fn: (db: DatabaseSync) => T): T {
    if (this.readOnly) {
      throw new StoreError("Cannot write to a store opened read-only", { code: "internal" });
    }
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn(this.#db);
      this.#db.exec("COMMIT");
      return out;
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  /** Closes the database. */
  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #migrate(migrations: readonly Migration[]): void {
    this.#db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    INTEGER PRIMARY KEY,
      name       TEXT NOT NULL,
      applied_at TEXT NOT NULL
    ) STRICT`);
    let current = this.version();
    for (const m of migrations) {
      if (m.version <= current) continue;
      if (m.version !== current + 1) {
        throw new StoreError(`Cannot migrate the store: migration ${current + 1} is missing`);
      }
      try {
        this.write((db) => {
          m.up(db);
          db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .run(m.version, m.name, new Date().toISOString());
        });
      } catch (err) {
        throw new StoreError(
          `Cannot apply store migration ${m.version} ("${m.name}"): ${message(err)}`,
          { cause: err },
        );
      }
      current = m.version;
    }
  }
}

/**
 * Classifies the database at `path` against `latest` without modifying it (the file is
 * opened read-only; a missing file is reported, not created).
 */
export function inspectSchema(path: string, latest: number = LATEST_VERSION): SchemaState {
  try {
    Deno.statSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { kind: "missing" };
    throw err;
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true, timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    throw new StoreError(`Cannot open the store "${path}": ${message(err)}`, { cause: err });
  }
  try {
    const version = recordedVersion(db);
    if (version > latest) return { kind: "newer", version, latest };
    if (version < latest) return { kind: "behind", version, latest };
    return { kind: "current", version };
  } finally {
    db.close();
  }
}

function recordedVersion(db: DatabaseSync): number {
  const table = db.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
  ).get();
  if (!table) return 0;
  const row = db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as
    | { v: number | null }
    | undefined;
  return row?.v ?? 0;
}

function newerError(path: string, version: number, latest: number): StoreError {
  return new StoreError(
    `Cannot open the store "${path}": its schema version ${version} is newer than this banger understands (${latest})`,
    {
      code: "failed_precondition",
      hint: "upgrade banger; the database was left untouched",
    },
  );
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
