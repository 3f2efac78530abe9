import { EM_X86_64, parseElf64 } from "../../../catalog/kernel/_elf.ts";
import { fetchDebianKernel, realKernelDependency } from "../../../catalog/kernel/debian_kernel.ts";
import { DebianPackageError, fetchDebianPackage } from "../../../catalog/kernel/debian_package.ts";
import { extractVmlinux } from "../../../catalog/kernel/extract_vmlinux.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../fixtures/assert.ts";
import { guestKernelRequirements } from "../../fixtures/guest_artifacts.ts";
import { gatedTest } from "../../fixtures/requires.ts";

Deno.test("realKernelDependency() picks the versioned linux-image from a meta package's Depends", () => {
  assertEquals(
    realKernelDependency("linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)"),
    "linux-image-6.1.0-56-cloud-amd64=6.1.192-2",
  );
  assertEquals(
    realKernelDependency("initramfs-tools | linux-initramfs-tool, linux-image-6.12.9-cloud-amd64"),
    "linux-image-6.12.9-cloud-amd64",
  );
  assertEquals(realKernelDependency("kmod, linux-base (>= 4.3~)"), undefined);
  assertEquals(realKernelDependency(""), undefined);
});

gatedTest(
  "fetchDebianKernel() downloads linux-image-cloud-amd64's real package and its bzImage yields a PVH ELF (apt)",
  guestKernelRequirements(),
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bgt-kernel-" });
    try {
      const kernel = await fetchDebianKernel({ cacheDir: `${dir}/cache`, unpackDir: `${dir}/k` });
      assertMatch(kernel.release, /^\d+\.\d+\.\d+-\d+-cloud-amd64$/);
      assertEquals(kernel.package.name, `linux-image-${kernel.release}`);
      assertMatch(kernel.package.debPath, new RegExp(`^${dir}/cache/debs/linux-image-`));
      const debs = [...Deno.readDirSync(`${dir}/cache/debs`)].map((e) => e.name).sort();
      assertEquals(debs.length, 2, "the meta and the real package, no leftover scratch dirs");

      const { vmlinux, compression, pvhEntry } = extractVmlinux(
        await Deno.readFile(kernel.vmlinuzPath),
      );
      assertEquals(compression, "lz4");
      const elf = parseElf64(vmlinux);
      assert(elf, "vmlinux is an ELF64 file");
      assertEquals([...vmlinux.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
      assertEquals(elf.machine, EM_X86_64);
      assert(pvhEntry !== undefined && pvhEntry > 0, "vmlinux has the Xen PVH entry note");

      const again = await fetchDebianKernel({ cacheDir: `${dir}/cache`, unpackDir: `${dir}/k2` });
      assertEquals(again.package.sha256, kernel.package.sha256);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gatedTest(
  "fetchDebianPackage() reports an unknown package as not found (apt)",
  guestKernelRequirements(),
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bgt-deb-" });
    try {
      const err = await assertRejects(
        () => fetchDebianPackage("banger-no-such-package", { cacheDir: dir }),
        DebianPackageError,
        'Cannot fetch package "banger-no-such-package"',
      );
      assertEquals(err.code, "not_found");
      await assertRejects(
        () => fetchDebianPackage("bad name; rm", { cacheDir: dir }),
        DebianPackageError,
        "not a package name",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
