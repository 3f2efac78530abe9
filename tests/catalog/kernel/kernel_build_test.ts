import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { parseElf64, PT_INTERP, pvhEntry } from "../../../catalog/kernel/_elf.ts";
import { GUEST_MODULES } from "../../../catalog/kernel/initrd.ts";
import {
  buildKernel,
  KernelBuildError,
  kernelManifestSchema,
} from "../../../catalog/kernel/kernel_build.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../fixtures/assert.ts";
import { guestKernel, guestKernelRequirements } from "../../fixtures/guest_artifacts.ts";
import { gatedTest } from "../../fixtures/requires.ts";

gatedTest(
  "buildKernel() writes an ELF vmlinux, an initrd with static busybox and all guest modules, and a manifest (apt)",
  guestKernelRequirements(),
  async () => {
    const { kernelDir, vmlinux, initrd } = await guestKernel();
    const manifest = kernelManifestSchema.parse(
      JSON.parse(await Deno.readTextFile(`${kernelDir}/manifest.json`)),
    );
    assertMatch(manifest.version, /-cloud-amd64$/);
    assertEquals(manifest.source.kind, "debian");
    assertEquals(manifest.source.package, `linux-image-${manifest.version}`);
    assertEquals(manifest.arch, "x86_64");
    const kernel = await Deno.readFile(vmlinux);
    assertEquals(manifest.sha256, createHash("sha256").update(kernel).digest("hex"));
    const elf = parseElf64(kernel);
    assert(elf && pvhEntry(kernel, elf) !== undefined, "vmlinux boots through PVH");

    const archive = new TextDecoder("latin1").decode(gunzipSync(await Deno.readFile(initrd)));
    const moduleNames = [...archive.matchAll(/lib\/modules\/([a-z0-9_]+)\.ko\0/g)].map((m) => m[1]);
    assertEquals(moduleNames, [...GUEST_MODULES]);
    const busyboxAt = archive.indexOf("bin/busybox\0");
    assert(busyboxAt > 0, "busybox is in the initrd");
    const size = parseInt(archive.slice(busyboxAt - 110 + 54, busyboxAt - 110 + 62), 16);
    const dataAt = (busyboxAt + 12 + 3) & ~3;
    const busybox = new Uint8Array(
      [...archive.slice(dataAt, dataAt + size)].map((c) => c.charCodeAt(0)),
    );
    const bbElf = parseElf64(busybox);
    assert(bbElf && !bbElf.segments.some((s) => s.type === PT_INTERP), "busybox is static");
  },
);

Deno.test("buildKernel() rejects an invalid kernel name before fetching anything", async () => {
  const err = await assertRejects(
    () =>
      buildKernel({ name: "Bad Name", outDir: "/nonexistent/out", cacheDir: "/nonexistent/cache" }),
    KernelBuildError,
    'Cannot build kernel "Bad Name"',
  );
  assertEquals(err.code, "invalid_argument");
});
