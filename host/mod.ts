/**
 * `host/`: everything banger does to the machine it runs on.
 *
 * - Foundations: errors (`BangerError`, `ExecError`, `aggregateErrors`), subprocesses
 *   (`run`), on-disk layout, the schema kit, atomic file writes, IPv4 helpers.
 * - libc FFI (`libc.ts`; the one `Deno.dlopen` table is the private `_libc.ts`) and
 *   `/proc`/`/sys` access (`procfs.ts`), because Deno's file APIs refuse those trees
 *   without `--allow-all`.
 * - Primitives on real kernel objects: loop devices (`loop.ts`), device-mapper
 *   (`dm.ts`), per-VM root disks (`rootdisk.ts`), ext4 images without mounts
 *   (`ext4.ts`), taps (`tap.ts`), the bridge (`bridge.ts`), NAT (`nat.ts`).
 * - `PrivilegedOps` (`privileged_ops.ts`): the one typed, plain-data interface the
 *   daemon uses for all of the above, with argument validation against banger's managed
 *   directories (`managed_paths.ts`); `InProcessOps` implements it in-process.
 *
 * May import only Deno, `node:` built-ins and other `host/` files; never `daemon/`,
 * `commands/`, `store/` or `catalog/`.
 *
 * @module
 */

export * from "./errors.ts";
export * from "./exec.ts";
export * from "./layout.ts";
export * as schema from "./schema.ts";
export { type Infer, type Schema, SchemaError } from "./schema.ts";
export * from "./atomic_file.ts";
export * from "./ipv4.ts";
export * from "./libc.ts";
export * from "./procfs.ts";
export * from "./loop.ts";
export * from "./dm.ts";
export * from "./rootdisk.ts";
export * from "./ext4.ts";
export * from "./tap.ts";
export * from "./bridge.ts";
export * from "./nat.ts";
export * from "./managed_paths.ts";
export * from "./privileged_ops.ts";
export * from "./in_process_ops.ts";
