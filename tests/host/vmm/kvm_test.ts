import { classifyKvm, cpuFlags, cpuKhz, type KvmFacts } from "../../../host/vmm/kvm.ts";
import { assertEquals } from "../../fixtures/assert.ts";

const CPUINFO = "processor\t: 0\ncpu MHz\t\t: 2399.998\nflags\t\t: fpu vme vmx sse\n\n" +
  "processor\t: 1\ncpu MHz\t\t: 1200.000\nflags\t\t: fpu\n";

Deno.test("cpuFlags() and cpuKhz() read the first processor of /proc/cpuinfo text", () => {
  assertEquals(cpuFlags(CPUINFO), ["fpu", "vme", "vmx", "sse"]);
  assertEquals(cpuKhz(CPUINFO), 2399998);
  assertEquals(cpuFlags(""), []);
  assertEquals(cpuKhz("cpu MHz\t: 0\n"), undefined);
});

Deno.test("classifyKvm() names the first reason a standard guest cannot run", async (t) => {
  const ok: KvmFacts = {
    present: true,
    accessible: true,
    cpuFlags: ["vmx"],
    pvmModuleLoaded: false,
  };
  const cases: [string, Partial<KvmFacts>, string | undefined][] = [
    ["usable", {}, undefined],
    ["missing", { present: false, accessible: false }, "/dev/kvm does not exist"],
    [
      "not accessible",
      { accessible: false, openError: "mode 0600" },
      "cannot open /dev/kvm: mode 0600",
    ],
    ["nested PVM", { pvmModuleLoaded: true }, "nested PVM"],
    ["no vmx/svm", { cpuFlags: ["fpu"] }, "no vmx/svm"],
  ];
  for (const [name, change, reason] of cases) {
    await t.step(name, () => {
      const status = classifyKvm({ ...ok, ...change });
      assertEquals(status.usable, reason === undefined);
      assertEquals(reason === undefined || (status.reason ?? "").includes(reason), true);
    });
  }
});
