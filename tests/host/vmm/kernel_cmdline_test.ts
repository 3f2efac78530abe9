import { KernelCmdlineError, renderKernelCmdline } from "../../../host/vmm/kernel_cmdline.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";

const BASE = "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";

Deno.test("renderKernelCmdline() adds root= and tsc_early_khz= under QEMU microvm", () => {
  assertEquals(
    renderKernelCmdline({ vmm: "qemu-microvm", tscKhz: 2596094 }),
    `${BASE} root=/dev/vda rw tsc_early_khz=2596094`,
  );
});

Deno.test("renderKernelCmdline() leaves root= to Firecracker", () => {
  assertEquals(renderKernelCmdline({ vmm: "firecracker" }), BASE);
});

Deno.test("renderKernelCmdline() appends init= and extra arguments", () => {
  assertEquals(
    renderKernelCmdline({
      vmm: "firecracker",
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
    ["init with space", { vmm: "firecracker", init: "/sbin/init single" }, "init"],
    ["relative init", { vmm: "firecracker", init: "sbin/init" }, "absolute"],
    ["newline in init", { vmm: "firecracker", init: "/sbin/init\nquiet" }, "\\n"],
    ["space in extra", { vmm: "firecracker", extra: ["a b"] }, "one token"],
    ["newline in extra", { vmm: "firecracker", extra: ["quiet\ninit=/bin/sh"] }, "one token"],
    ["quote in extra", { vmm: "firecracker", extra: ['x="y"'] }, "no quotes"],
    ["too long", { vmm: "firecracker", extra: ["x".repeat(2048)] }, "limit is 2047"],
  ];
  for (const [name, options, why] of cases) {
    await t.step(name, () => {
      assertThrows(() => renderKernelCmdline(options), KernelCmdlineError, why);
    });
  }
});
