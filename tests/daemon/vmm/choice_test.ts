import { chooseVmm } from "../../../daemon/vmm/choice.ts";
import { FirecrackerDriver } from "../../../daemon/vmm/firecracker.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import {
  type FirecrackerProbe,
  FirecrackerVersionError,
} from "../../../host/vmm/firecracker/version.ts";
import { assertEquals, assertRejects, assertStringIncludes } from "../../fixtures/assert.ts";

const KVM = { present: true, accessible: true, usable: true };
const NO_KVM = { present: true, accessible: true, usable: false, reason: "nested PVM" };
const fc = (version: string): FirecrackerProbe => ({
  found: true,
  path: "/usr/local/bin/firecracker",
  version,
});

Deno.test("chooseVmm() auto picks Firecracker only for a supported release on a usable KVM", () => {
  assertEquals(chooseVmm("auto", { kvm: KVM, firecracker: fc("1.8.0") }).vmm, "firecracker");
  assertEquals(
    chooseVmm("auto", { kvm: KVM, firecracker: fc("1.16.1") }).reason,
    "firecracker v1.16.1 (/usr/local/bin/firecracker)",
  );
  const old = chooseVmm("auto", { kvm: KVM, firecracker: fc("1.7.0") });
  assertEquals([old.vmm, old.accel], ["qemu", "kvm"]);
  assertStringIncludes(old.reason, "is v1.7.0, older than v1.8.0");
  const missing = chooseVmm("auto", {
    kvm: KVM,
    firecracker: { found: false, problem: `"firecracker" not found` },
  });
  assertStringIncludes(missing.reason, `"firecracker" not found`);
  const tcg = chooseVmm("auto", { kvm: NO_KVM, firecracker: fc("1.16.1") });
  assertEquals([tcg.vmm, tcg.accel], ["qemu", "tcg"]);
});

Deno.test("chooseVmm() honours an explicit choice (the driver refuses an unsupported Firecracker at start)", () => {
  assertEquals(
    chooseVmm("firecracker", { kvm: NO_KVM, firecracker: fc("1.7.0") }).vmm,
    "firecracker",
  );
  assertEquals(chooseVmm("qemu", { kvm: KVM, firecracker: fc("1.16.1") }).vmm, "qemu");
});

Deno.test("FirecrackerDriver refuses to boot with an unsupported or missing Firecracker, saying how to upgrade", async () => {
  const procs = new InProcessOps({ stateDir: "/tmp", cacheDir: "/tmp", runtimeDir: "/tmp" });
  const spec = {
    vmId: "v",
    vmDir: "/tmp/never-made",
    vcpu: 1,
    memoryMib: 128,
    kernel: "/k",
    rootDisk: "/r",
    workDisk: "/w",
    tap: "t",
    guestIp: 0,
    vsockCid: 3,
  };
  for (
    const [probe, why] of [
      [fc("1.7.0"), "Firecracker at /usr/local/bin/firecracker is v1.7.0, older than v1.8.0"],
      [{ found: false, problem: `"firecracker" not found` }, `"firecracker" not found`],
    ] as const
  ) {
    const err = await assertRejects(
      () => new FirecrackerDriver(probe, procs).launch(spec),
      FirecrackerVersionError,
      why,
    );
    assertEquals((err as FirecrackerVersionError).code, "failed_precondition");
    assertStringIncludes(String((err as FirecrackerVersionError).hint), "v1.8.0 or newer");
  }
  await assertRejects(() => Deno.stat("/tmp/never-made"), Deno.errors.NotFound);
});
