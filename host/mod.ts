/**
 * `host/`: everything banger does to the machine it runs on. This file is its door: the
 * foundations every other layer uses, re-exported from the rooms that hold them.
 *
 * - Foundations here: errors (`BangerError`, `ExecError`, `aggregateErrors`), the on-disk
 *   layout, the schema kit, byte helpers, op-id scoping.
 * - `os/`: libc FFI (`libc.ts`; the one `Deno.dlopen` table is the private `_libc.ts`),
 *   `/proc`/`/sys` access, processes, subprocesses (`run`), atomic file writes.
 * - `disk/`: loop devices, device-mapper, per-VM root disks, ext4 images without mounts.
 * - `net/`: taps, the bridge, NAT, IPv4 arithmetic.
 * - `vmm/`: Firecracker and QEMU processes, vsock, kvm, kernel command lines.
 * - `privileged/`: `PrivilegedOps`, the one typed, plain-data interface the daemon uses
 *   for root-only work, with argument validation against banger's managed directories;
 *   `InProcessOps` implements it in-process, `helper/` over the root helper's socket.
 * - `system/`, `ssh/`, `git/`: `system install`, ssh keys and config, git plumbing.
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
