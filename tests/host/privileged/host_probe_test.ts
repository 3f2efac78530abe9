import {
  probeHostFacts,
  readWriteDenial,
  supplementaryGroups,
} from "../../../host/privileged/_host_probe.ts";
import { pathExists } from "../../../host/os/libc.ts";
import { assert, assertEquals, assertStringIncludes } from "../../fixtures/assert.ts";
import { gatedTest, path, programs, root } from "../../fixtures/requires.ts";

const user = { uid: 1000, gid: 1000, groups: [108] };

Deno.test("readWriteDenial() applies the owner, then group, then other bits", async (t) => {
  const names = new Map([[108, "kvm"]]);
  await t.step("world rw (0666) allows anyone", () => {
    assertEquals(readWriteDenial({ mode: 0o20666, uid: 0, gid: 0 }, user), undefined);
  });
  await t.step("group rw (0660) allows a supplementary group member", () => {
    assertEquals(readWriteDenial({ mode: 0o20660, uid: 0, gid: 108 }, user), undefined);
  });
  await t.step("group rw (0660) allows the primary group", () => {
    assertEquals(readWriteDenial({ mode: 0o660, uid: 0, gid: 1000 }, user), undefined);
  });
  await t.step("0660 refuses a non-member and names the group", () => {
    const why = readWriteDenial({ mode: 0o660, uid: 0, gid: 108 }, { ...user, groups: [] }, names);
    assertEquals(
      why,
      "mode 0660, owner uid 0, group kvm: uid 1000 is not in group kvm and may not read and write it",
    );
  });
  await t.step("the owner class wins even when the group bits would allow", () => {
    assert(readWriteDenial({ mode: 0o066, uid: 1000, gid: 108 }, user) !== undefined);
  });
  await t.step("read-only for the group is not enough", () => {
    assert(readWriteDenial({ mode: 0o640, uid: 0, gid: 108 }, user) !== undefined);
  });
  await t.step("root may always", () => {
    assertEquals(readWriteDenial({ mode: 0o600, uid: 5, gid: 5 }, { ...user, uid: 0 }), undefined);
  });
});

Deno.test("supplementaryGroups() lists the groups naming the uid's login", () => {
  const passwd = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
  const group = "root:x:0:\nkvm:x:108:bob,alice\nalice:x:1000:\ndocker:x:999:bob\n";
  assertEquals(supplementaryGroups(1000, passwd, group), [108]);
  assertEquals(supplementaryGroups(0, passwd, group), []);
  assertEquals(supplementaryGroups(4242, passwd, group), [], "unknown uid");
});

Deno.test("probeHostFacts() reports the device nodes libc sees", () => {
  const facts = probeHostFacts();
  assertEquals(facts.devices, {
    vhostVsock: pathExists("/dev/vhost-vsock"),
    netTun: pathExists("/dev/net/tun"),
    loopControl: pathExists("/dev/loop-control"),
    mapperControl: pathExists("/dev/mapper/control"),
  });
  assertEquals(facts.kvm.present, pathExists("/dev/kvm"));
  assertEquals(facts.kvm.pvmModuleLoaded, pathExists("/sys/module/kvm_pvm"));
  assert(facts.kvm.cpuFlags.includes("fpu"), "x86 CPUs list fpu");
  assert((facts.cpuKhz ?? 0) > 0, "cpu MHz is in /proc/cpuinfo");
});

gatedTest(
  "probeHostFacts() judges /dev/kvm for the VMM user, not for the (root) prober, as the kernel does (root, /dev/kvm, setpriv)",
  [root(), path("/dev/kvm"), programs("setpriv")],
  async () => {
    assertEquals(probeHostFacts().kvm.accessible, true, "root opens it");
    const nobody = { uid: 65534, gid: 65534, groups: [] };
    const facts = probeHostFacts(nobody);
    // The oracle is the kernel's own answer for that uid, not our mode arithmetic.
    const asNobody = await new Deno.Command("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
        "test -r /dev/kvm && test -w /dev/kvm",
      ],
    }).output();
    assertEquals(facts.kvm.accessible, asNobody.success);
    if (!asNobody.success) assertStringIncludes(facts.kvm.openError ?? "", "uid 65534");
  },
);
