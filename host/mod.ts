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
export * from "./os/exec.ts";
export * from "./layout.ts";
export * as schema from "./schema.ts";
export { type Infer, type Schema, SchemaError } from "./schema.ts";
export * from "./os/atomic_file.ts";
export * from "./net/ipv4.ts";
export * from "./os/libc.ts";
export * from "./os/procfs.ts";
export * from "./disk/loop.ts";
export * from "./disk/dm.ts";
export * from "./disk/rootdisk.ts";
export * from "./disk/ext4.ts";
export * from "./net/tap.ts";
export * from "./net/bridge.ts";
export * from "./net/nat.ts";
export * from "./privileged/managed_paths.ts";
export * from "./privileged/privileged_ops.ts";
export * from "./privileged/in_process_ops.ts";
