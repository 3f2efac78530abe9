import {
  modinfoDepends,
  moduleLoadOrder,
  moduleName,
  ModuleOrderError,
  parseModulesDep,
} from "../../../catalog/kernel/module_order.ts";
import { GUEST_MODULES } from "../../../catalog/kernel/initrd.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { elfModule } from "../../fixtures/tiny_elf.ts";

/** `depends=` of each guest module in linux-image-6.1.0-56-cloud-amd64 (modinfo -F depends). */
const DEBIAN_6_1_DEPENDS: Record<string, string[]> = {
  virtio_ring: [],
  virtio: ["virtio_ring"],
  virtio_pci_modern_dev: [],
  virtio_pci_legacy_dev: [],
  virtio_pci: ["virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"],
  virtio_mmio: ["virtio", "virtio_ring"],
  virtio_blk: ["virtio", "virtio_ring"],
  failover: [],
  net_failover: ["failover"],
  virtio_net: ["virtio_ring", "virtio", "net_failover"],
  vsock: [],
  vmw_vsock_virtio_transport_common: ["vsock"],
  vmw_vsock_virtio_transport: [
    "virtio",
    "vmw_vsock_virtio_transport_common",
    "virtio_ring",
    "vsock",
  ],
};

Deno.test("moduleLoadOrder() gives the guest modules of Debian's 6.1 cloud kernel in dependency order", () => {
  assertEquals(moduleLoadOrder(GUEST_MODULES, (m) => DEBIAN_6_1_DEPENDS[m]), [
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
  ]);
});

Deno.test("moduleLoadOrder() adds dependencies that were not asked for, before their users", () => {
  assertEquals(
    moduleLoadOrder(["virtio_net", "virtio_blk"], (m) => DEBIAN_6_1_DEPENDS[m]),
    ["virtio_ring", "virtio", "failover", "net_failover", "virtio_net", "virtio_blk"],
  );
});

Deno.test("moduleLoadOrder() names a missing module and who needs it", () => {
  const deps: Record<string, string[]> = { virtio_blk: ["virtio"] };
  assertThrows(
    () => moduleLoadOrder(["virtio_blk"], (m) => deps[m]),
    ModuleOrderError,
    'Cannot find kernel module "virtio" (needed by "virtio_blk")',
  );
});

Deno.test("moduleLoadOrder() rejects a dependency cycle", () => {
  const deps: Record<string, string[]> = { a: ["b"], b: ["a"] };
  assertThrows(() => moduleLoadOrder(["a"], (m) => deps[m]), ModuleOrderError, "a -> b -> a");
});

Deno.test("parseModulesDep() maps depmod lines to normalised module names", () => {
  const deps = parseModulesDep(
    "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko\n" +
      "kernel/drivers/virtio/virtio_ring.ko:\n" +
      "kernel/drivers/net/net-failover.ko.xz: kernel/net/core/failover.ko.xz\n",
  );
  assertEquals(deps.get("virtio_pci"), ["virtio_pci_modern_dev", "virtio"]);
  assertEquals(deps.get("virtio_ring"), []);
  assertEquals(deps.get("net_failover"), ["failover"]);
});

Deno.test("modinfoDepends() reads depends= from a module's .modinfo section", () => {
  const ko = elfModule(["license=GPL", "depends=virtio,virtio_ring", "name=virtio_blk"]);
  assertEquals(modinfoDepends(ko), ["virtio", "virtio_ring"]);
  assertEquals(modinfoDepends(elfModule(["depends=", "name=virtio_ring"])), []);
});

Deno.test("modinfoDepends() rejects a file that is not a module", () => {
  assertThrows(
    () => modinfoDepends(new TextEncoder().encode("not an elf"), "x.ko"),
    ModuleOrderError,
    '"x.ko"',
  );
});

Deno.test("moduleName() strips directories, .ko suffixes and dashes", () => {
  assertEquals(moduleName("kernel/drivers/net/net-failover.ko.zst"), "net_failover");
  assertEquals(moduleName("virtio_blk"), "virtio_blk");
});
