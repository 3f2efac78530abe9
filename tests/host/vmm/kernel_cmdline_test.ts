import { KernelCmdlineError, renderKernelCmdline } from "../../../host/vmm/kernel_cmdline.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";

const BASE = "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd";
const FC = { vmm: "firecracker", firecrackerVersion: "1.16.1" } as const;

Deno.test("renderKernelCmdline() adds i8042.nopnp, root= and tsc_early_khz= under QEMU microvm", () => {
  assertEquals(
    renderKernelCmdline({ vmm: "qemu-microvm", tscKhz: 2596094 }),
    `${BASE} i8042.nopnp root=/dev/vda rw tsc_early_khz=2596094`,
  );
});

Deno.test("renderKernelCmdline() for Firecracker keeps keyboard PnP (Ctrl+Alt+Del) and leaves root= to it", () => {
  assertEquals(renderKernelCmdline(FC), BASE);
  assertEquals(renderKernelCmdline(FC).includes("nopnp"), false);
});

Deno.test("renderKernelCmdline() adds pci=off only for Firecracker releases that do not add it", () => {
  const line = (v: string) => renderKernelCmdline({ vmm: "firecracker", firecrackerVersion: v });
  assertEquals(line("1.8.0"), `${BASE} pci=off`);
  assertEquals(line("1.12.1"), `${BASE} pci=off`);
  assertEquals(line("1.13.0"), BASE);
  assertEquals(line("1.16.1"), BASE);
});

Deno.test("renderKernelCmdline() appends init= and extra arguments", () => {
  assertEquals(
    renderKernelCmdline({
      ...FC,
      init: "/usr/local/libexec/banger-first-boot",
      extra: ["quiet", "systemd.unit=rescue.target"],
    }),
    `${BASE} init=/usr/local/libexec/banger-first-boot quiet systemd.unit=rescue.target`,
  );
});

Deno.test("renderKernelCmdline() rejects injected text and missing values", async (t) => {
  const cases: [string, Parameters<typeof renderKernelCmdline>[0], string][] = [
    ["missing tsc", { vmm: "qemu-microvm" }, "tsc_early_khz"],
    ["fractional tsc", { vmm: "qemu-microvm", tscKhz: 2596.5 }, "tsc_early_khz"],
    ["missing firecracker version", { vmm: "firecracker" }, "version must be known"],
    ["init with space", { ...FC, init: "/sbin/init single" }, "init"],
    ["relative init", { ...FC, init: "sbin/init" }, "absolute"],
    ["newline in init", { ...FC, init: "/sbin/init\nquiet" }, "\\n"],
    ["space in extra", { ...FC, extra: ["a b"] }, "one token"],
    ["newline in extra", { ...FC, extra: ["quiet\ninit=/bin/sh"] }, "one token"],
    ["quote in extra", { ...FC, extra: ['x="y"'] }, "no quotes"],
    ["too long", { ...FC, extra: ["x".repeat(2048)] }, "limit is 2047"],
  ];
  for (const [name, options, why] of cases) {
    await t.step(name, () => {
      assertThrows(() => renderKernelCmdline(options), KernelCmdlineError, why);
    });
  }
});
