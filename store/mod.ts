/**
 * The SQLite store: opening and migrating the database, and typed repositories for
 * kernels, images and VMs. May import `host/` (errors, schema); never `daemon/` or
 * `commands/`.
 *
 * @module
 */

export * from "./db.ts";
export * from "./counts.ts";
export { LATEST_VERSION, MIGRATIONS } from "./migrations.ts";
