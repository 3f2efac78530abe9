/**
 * Builds the small initramfs that every banger guest boots with. Debian's cloud kernel has
 * virtio as modules, and root sits on virtio-blk, so an initrd is mandatory: it holds a
 * static busybox, the guest modules (from the same kernel package) and an `/init` that
 *
 * 1. loads the modules in dependency order (`module_order.ts`);
 * 2. mounts `root=` (default `/dev/vda`) read-write (`ro` on the command line honoured);
 * 3. when the work disk `/dev/vdb` has `.banger/guest.env`, mounts it read-only and runs
 *    `banger-network-bootstrap` against the new root, so the network is up before the
 *    image's init starts (images without iproute2 included);
 * 4. moves `/dev`, `/proc`, `/sys` into the new root and `switch_root`s to `init=`
 *    (default `/sbin/init`).
 *
 * Any failure prints `banger-initrd: …` on the console and exits, which panics the
 * kernel; with `panic=1 reboot=k` the VM stops instead of hanging.
 *
 * The archive is a gzip'd newc cpio written in TypeScript (`cpio.ts`): no host `cpio`.
 *
 * @module
 */

import { gzipSync } from "node:zlib";
import { BangerError } from "../../host/errors.ts";
import { parseElf64, PT_INTERP } from "./_elf.ts";
import { type CpioEntry, encodeNewc } from "./cpio.ts";
import { networkBootstrap } from "../guest/network_bootstrap.ts";
import { modinfoDepends, moduleLoadOrder, moduleName, parseModulesDep } from "./module_order.ts";

/** An initrd that cannot be built. */
export class InitrdError extends BangerError {}

/**
 * The modules a guest needs: virtio transports (PCI and MMIO), block, net, and vsock for
 * Firecracker's vsock device. Their dependencies are added and ordered automatically.
 */
export const GUEST_MODULES: readonly string[] = [
  "virtio_ring",
  "virtio",
  "virtio_pci_modern_dev",
  "virtio_pci_legacy_dev",
  "virtio_pci",
  "virtio_mmio",
  "virtio_blk",
  "failover",
  "net_failover",
  "virtio_net",
  "vsock",
  "vmw_vsock_virtio_transport_common",
  "vmw_vsock_virtio_transport",
];

/** Options for {@linkcode buildInitrd}. */
export interface InitrdOptions {
  /** A statically linked busybox binary. */
  busybox: Uint8Array;
  /** The kernel's module directory, `lib/modules/<release>` of the unpacked package. */
  modulesDir: string;
  /** Modules to include. @default {GUEST_MODULES} */
  modules?: readonly string[];
}

/** A built initrd. */
export interface Initrd {
  /** The gzip'd cpio archive, ready to write as `initrd.img`. */
  image: Uint8Array;
  /** The modules it loads, in load order. */
  modules: string[];
}

/**
 * Builds the initramfs from a busybox binary and a kernel's module directory.
 *
 * @throws {InitrdError} when busybox is not a static executable, the module directory
 *   cannot be read, or a module is missing or compressed.
 * @example
 * ```ts
 * const busybox = await Deno.readFile("/bin/busybox");
 * const { image, modules } = await buildInitrd({
 *   busybox,
 *   modulesDir: "/cache/unpacked/lib/modules/6.1.0-56-cloud-amd64",
 * });
 * await Deno.writeFile("initrd.img", image);
 * ```
 */
export async function buildInitrd(options: InitrdOptions): Promise<Initrd> {
  checkStaticBusybox(options.busybox);
  const files = await indexModules(options.modulesDir);
  const depMap = await readModulesDep(options.modulesDir);
  const loaded = new Map<string, Uint8Array>();
  const load = async (name: string): Promise<Uint8Array | undefined> => {
    const rel = files.get(name);
    if (rel === undefined) return undefined;
    if (!rel.endsWith(".ko")) {
      throw new InitrdError(`Cannot add module "${name}" to the initrd: "${rel}" is compressed`);
    }
    const cached = loaded.get(name) ?? await Deno.readFile(`${options.modulesDir}/${rel}`);
    loaded.set(name, cached);
    return cached;
  };
  const wanted = options.modules ?? GUEST_MODULES;
  const directDeps = new Map<string, string[] | undefined>();
  // Resolve the dependency graph eagerly (reads are async; ordering is pure).
  const queue = wanted.map(moduleName);
  while (queue.length > 0) {
    const name = queue.shift() as string;
    if (directDeps.has(name)) continue;
    const ko = await load(name);
    const deps = ko === undefined
      ? undefined
      : depMap?.get(name) ?? modinfoDepends(ko, files.get(name));
    directDeps.set(name, deps);
    queue.push(...(deps ?? []));
  }
  const order = moduleLoadOrder(wanted, (m) => directDeps.get(m));
  const entries: CpioEntry[] = [
    ...["bin", "dev", "lib", "lib/modules", "newroot", "proc", "run", "sys", "work"].map(
      (path): CpioEntry => ({ kind: "dir", path, mode: 0o755 }),
    ),
    { kind: "chardev", path: "dev/console", mode: 0o600, major: 5, minor: 1 },
    { kind: "file", path: "bin/busybox", mode: 0o755, data: options.busybox },
    { kind: "symlink", path: "bin/sh", target: "busybox" },
    {
      kind: "file",
      path: "bin/banger-network-bootstrap",
      mode: 0o755,
      data: new TextEncoder().encode(networkBootstrap.script),
    },
    ...order.map((name): CpioEntry => ({
      kind: "file",
      path: `lib/modules/${name}.ko`,
      mode: 0o644,
      data: loaded.get(name) ?? new Uint8Array(0),
    })),
    {
      kind: "file",
      path: "init",
      mode: 0o755,
      data: new TextEncoder().encode(renderInitScript(order)),
    },
  ];
  return { image: gzipSync(encodeNewc(entries)), modules: order };
}

/**
 * The initramfs `/init` for a module load order. Pure.
 *
 * @throws {InitrdError} when a module name is not `[a-z0-9_]+`.
 */
export function renderInitScript(modules: readonly string[]): string {
  for (const m of modules) {
    if (!/^[a-z0-9_]+$/.test(m)) throw new InitrdError(`Cannot load module "${m}": bad name`);
  }
  return `#!/bin/busybox sh
# banger initramfs: load the guest modules, mount the root disk, bring the network up
# from the work disk's guest.env, then switch_root into the image's init.
/bin/busybox --install -s /bin
export PATH=/bin
set -f
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "banger-initrd: $*"; }
fail() { say "$*"; say "cannot continue: stopping the VM"; sleep 1; exit 1; }
wait_block() {
  i=0
  while [ ! -b "$1" ]; do
    [ $i -ge $2 ] && return 1
    sleep 0.05
    i=$((i + 1))
  done
}

for m in ${modules.join(" ")}; do
  insmod "/lib/modules/$m.ko" || say "cannot load module $m"
done

root=/dev/vda init=/sbin/init mode=rw
for arg in $(cat /proc/cmdline); do
  case $arg in
    root=*) root=\${arg#root=} ;;
    init=*) init=\${arg#init=} ;;
    ro) mode=ro ;;
    rw) mode=rw ;;
  esac
done

wait_block "$root" 200 || fail "root device $root did not appear within 10 s"
mount -t ext4 -o "$mode" "$root" /newroot || fail "cannot mount $root"

if [ -e /sys/block/vdb ] && wait_block /dev/vdb 40 && mount -t ext4 -o ro /dev/vdb /work 2>/dev/null; then
  if [ -f /work/.banger/guest.env ]; then
    BANGER_ROOT=/newroot BANGER_GUEST_ENV=/work/.banger/guest.env /bin/banger-network-bootstrap ||
      say "network setup from guest.env failed"
  fi
  umount /work
fi

[ -e "/newroot$init" ] || [ -L "/newroot$init" ] || fail "init $init is missing from $root"
for fs in dev proc sys; do
  if [ -d "/newroot/$fs" ]; then mount --move "/$fs" "/newroot/$fs"; else umount -l "/$fs"; fi
done
exec switch_root /newroot "$init"
`;
}

function checkStaticBusybox(busybox: Uint8Array): void {
  const elf = parseElf64(busybox);
  const problem = elf === undefined
    ? "it is not an ELF executable"
    : elf.segments.some((s) => s.type === PT_INTERP)
    ? "it is dynamically linked"
    : undefined;
  if (problem) {
    throw new InitrdError(`Cannot put busybox in the initrd: ${problem}`, {
      code: "failed_precondition",
      hint: "use the static build (Debian package busybox-static)",
    });
  }
}

/** Module name → path relative to `modulesDir`, from `modules.order` or a directory walk. */
async function indexModules(modulesDir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  try {
    const order = await Deno.readTextFile(`${modulesDir}/modules.order`);
    for (const line of order.split("\n").map((l) => l.trim()).filter(Boolean)) {
      index.set(moduleName(line), line);
    }
    return index;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw readError(modulesDir, err);
  }
  const walk = async (rel: string): Promise<void> => {
    for await (const entry of Deno.readDir(`${modulesDir}/${rel}`)) {
      const path = `${rel}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (/\.ko(\.(xz|gz|zst))?$/.test(entry.name)) index.set(moduleName(path), path);
    }
  };
  try {
    await walk("kernel");
  } catch (err) {
    throw readError(modulesDir, err);
  }
  return index;
}

async function readModulesDep(modulesDir: string): Promise<Map<string, string[]> | undefined> {
  try {
    return parseModulesDep(await Deno.readTextFile(`${modulesDir}/modules.dep`));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw readError(modulesDir, err);
  }
}

function readError(dir: string, cause: unknown): InitrdError {
  return new InitrdError(
    `Cannot read kernel modules in "${dir}": ${cause instanceof Error ? cause.message : cause}`,
    { code: "failed_precondition", cause },
  );
}
