import { assert, assertEquals, assertRejects, within } from "../../fixtures/assert.ts";
import { leftovers, vmHarness } from "../../fixtures/vm_harness.ts";
import { programs, root } from "../../fixtures/requires.ts";
import { gatedTest } from "../../fixtures/requires.ts";
import { getVm } from "../../../store/vms.ts";
import { teardownVm } from "../../../daemon/vm/stop.ts";
import { readExt4File } from "../../../host/disk/ext4.ts";
import { defaultSshKey, imagesDir, vmFiles } from "../../../host/layout.ts";

const needs = [root(), programs("ip", "nft", "mkfs.ext4", "debugfs")];

gatedTest(
  "VmService runs create → stop → start → delete with the simulated fake, leaving nothing (root, netns)",
  needs,
  async () => {
    await using h = await vmHarness();
    const vms = h.services.vms;
    const vm = await vms.create({ name: "dev" }, h.ctx());
    assertEquals(vm.status, "running");
    assert(
      vm.runtime.pid !== undefined && vm.runtime.tap && vm.runtime.rootDisk,
      "handles recorded",
    );
    assertEquals(h.services.net.dns.lookup("dev"), vm.guestIp);
    const handlesFile = JSON.parse(await Deno.readTextFile(`${vm.runtime.vmDir}/handles.json`));
    assertEquals(handlesFile.pid, vm.runtime.pid, "handles.json mirrors the row");

    const [stopped] = await vms.stop(["dev"], h.ctx());
    assertEquals(stopped.vm?.status, "stopped", String(stopped.error));
    assertEquals(h.services.net.dns.lookup("dev"), undefined);
    let left = await leftovers(h);
    assertEquals([left.disks, left.taps, left.vmms], [[], [], []], "a stopped VM holds nothing");

    const [started] = await vms.start(["dev"], h.ctx());
    assertEquals(started.vm?.status, "running", String(started.error));
    const [refused] = await vms.delete(["dev"], h.ctx(), { refuseRunning: true });
    assert(refused.error instanceof Error, "a running VM is refused without force");
    assertEquals((refused.error as { code?: string }).code, "conflict");
    assertEquals(vms.find("dev").status, "running", "the refused VM keeps running");
    const [deleted] = await vms.delete(["dev"], h.ctx());
    assert(deleted.vm && !deleted.error, String(deleted.error));
    assertEquals(vms.list(), []);
    left = await leftovers(h);
    assertEquals([left.disks, left.taps, left.nat, left.vmms], [[], [], [], []]);
    await Deno.stat(vm.runtime.vmDir).then(() => assert(false, "vm dir kept"), () => {});
  },
);

const STEPS = ["prepare", "ports", "root_disk", "work_disk", "tap", "nat", "vmm", "boot", "dns"];

gatedTest(
  "VmService.create() failing at each start step leaves no loop, tap, nft rule or process, and records the step (root, netns)",
  needs,
  async (t) => {
    let failAt = "";
    await using h = await vmHarness({
      faults: {
        beforeStep(step) {
          if (step === failAt) throw new Error(`injected failure at ${step}`);
        },
      },
    });
    for (const step of STEPS) {
      await t.step(step, async () => {
        failAt = step;
        const name = `f-${step.replace("_", "-")}`;
        await assertRejects(
          () => h.services.vms.create({ name, nat: true }, h.ctx()),
          Error,
          `injected failure at ${step}`,
        );
        const vm = h.services.vms.find(name);
        assertEquals(vm.status, "error");
        assertEquals(vm.runtime.lastError?.step, step);
        assertEquals(
          [vm.runtime.pid, vm.runtime.tap, vm.runtime.rootDisk, vm.runtime.natInstalled],
          [undefined, undefined, undefined, undefined],
        );
        const left = await leftovers(h);
        assertEquals(left, { disks: [], taps: [], nat: [], vmms: [] });
        assertEquals(h.services.net.dns.lookup(name), undefined);
        const files = [...Deno.readDirSync(vm.runtime.vmDir)].map((e) => e.name).filter((n) =>
          n.startsWith(".") || n.includes(".tmp")
        );
        assertEquals(files, [], "no staging or temp files");
        failAt = "";
        const [again] = await h.services.vms.start([name], h.ctx());
        assertEquals(again.vm?.status, "running", "a failed VM starts once the cause is gone");
        await h.services.vms.delete([name], h.ctx());
      });
    }
  },
);

gatedTest(
  "VmService.create() of different names boots them concurrently (root, netns)",
  needs,
  async () => {
    const atBoot: string[] = [];
    const release = Promise.withResolvers<void>();
    const bothAtBoot = Promise.withResolvers<void>();
    await using h = await vmHarness({
      faults: {
        async beforeStep(step) {
          if (step !== "boot") return;
          atBoot.push(step);
          if (atBoot.length === 2) bothAtBoot.resolve();
          await release.promise;
        },
      },
    });
    const creates = [
      h.services.vms.create({ name: "par-a" }, h.ctx()),
      h.services.vms.create({ name: "par-b" }, h.ctx()),
    ];
    // Both boots are in flight at once; with a serialising lock the second would never
    // reach its boot step while the first is held here.
    try {
      await within(bothAtBoot.promise, 30_000, "both creates at their boot step at once");
    } finally {
      release.resolve(); // a failed wait must not leave the boots stuck for the teardown
    }
    const [a, b] = await within(Promise.all(creates), 60_000, "both creates");
    assertEquals([a.status, b.status], ["running", "running"]);
    assert(a.guestIp !== b.guestIp && a.vsockCid !== b.vsockCid, "distinct addresses and CIDs");
  },
);

gatedTest(
  "VmService.create() after the SSH key rotates, three at once: each work disk gets the new key and the image's files stay byte-identical (root, netns)",
  needs,
  async () => {
    // The Go tool rewrote a shared work-seed image in place when the key changed, and
    // parallel creates read it torn. Here every key write goes to the VM's own work disk.
    await using h = await vmHarness();
    await h.services.vms.create({ name: "before", no_start: true }, h.ctx());
    const imageFiles = async () => {
      const out: Record<string, string> = {};
      for await (const e of Deno.readDir(imagesDir(h.layout))) {
        for await (const f of Deno.readDir(`${imagesDir(h.layout)}/${e.name}`)) {
          const path = `${imagesDir(h.layout)}/${e.name}/${f.name}`;
          const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
          out[path] = Array.from(new Uint8Array(digest), (b) => b.toString(16)).join("");
        }
      }
      return out;
    };
    const before = await imageFiles();
    const key = defaultSshKey(h.layout);
    const oldKey = await Deno.readTextFile(`${key}.pub`);
    await Deno.remove(key);
    await Deno.remove(`${key}.pub`);
    const keygen = await new Deno.Command("ssh-keygen", {
      args: ["-q", "-t", "ed25519", "-N", "", "-C", "rotated", "-f", key],
    }).output();
    assert(keygen.success, "ssh-keygen");
    const newKey = (await Deno.readTextFile(`${key}.pub`)).trim();
    assert(newKey !== oldKey.trim(), "the key rotated");

    const vms = await Promise.all(
      ["rot-a", "rot-b", "rot-c"].map((name) => h.services.vms.create({ name }, h.ctx())),
    );
    assertEquals(vms.map((v) => v.status), ["running", "running", "running"]);
    const [restarted] = await h.services.vms.start(["before"], h.ctx());
    assertEquals(restarted.vm?.status, "running", String(restarted.error));
    for (const vm of [...vms, h.services.vms.find("before")]) {
      const workDisk = `${vm.runtime.vmDir}/${vmFiles.workDisk}`;
      const keys = new TextDecoder().decode(
        await readExt4File(workDisk, "/.ssh/authorized_keys"),
      );
      assertEquals(keys, `${newKey}\n`, `${vm.name} has the new key only`);
    }
    assertEquals(await imageFiles(), before, "the image's files are untouched");
  },
);

gatedTest(
  "VmService.create() of one name twice at once has exactly one winner; a prefix of an existing name is fine (root, netns)",
  needs,
  async () => {
    await using h = await vmHarness();
    const results = await Promise.allSettled([
      h.services.vms.create({ name: "twin", no_start: true }, h.ctx()),
      h.services.vms.create({ name: "twin", no_start: true }, h.ctx()),
    ]);
    assertEquals(results.filter((r) => r.status === "fulfilled").length, 1);
    const loser = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    assertEquals(loser.reason.code, "conflict");
    await h.services.vms.create({ name: "longname-sandbox", no_start: true }, h.ctx());
    const short = await h.services.vms.create({ name: "longname", no_start: true }, h.ctx());
    assertEquals(short.name, "longname");
    assertEquals(h.services.vms.find("longname").id, short.id, "an exact name wins over a prefix");
  },
);

gatedTest(
  "VmService.create() rejects a bad spec and leaves no row (root, netns)",
  needs,
  async (t) => {
    await using h = await vmHarness();
    const bad: [string, Record<string, unknown>][] = [
      ["vcpu 0", { vcpu: 0 }],
      ["bad name", { name: "Bad_Name" }],
      ["bad size", { disk_size: "4XB" }],
      ["tiny memory", { memory_mib: 16 }],
    ];
    for (const [label, req] of bad) {
      await t.step(label, async () => {
        const err = await assertRejects(() => h.services.vms.create(req, h.ctx()));
        assertEquals((err as { code?: string }).code, "invalid_argument");
        assertEquals(h.services.vms.list(), []);
      });
    }
  },
);

gatedTest(
  "VmService lifecycle verbs report each ref in order and resolve prefixes (root, netns)",
  needs,
  async () => {
    await using h = await vmHarness();
    const vms = h.services.vms;
    await vms.create({ name: "alpha" }, h.ctx());
    await vms.create({ name: "beta", no_start: true }, h.ctx());
    const out = await vms.stop(["alp", "nope", "beta"], h.ctx());
    assertEquals(out.map((o) => o.ref), ["alp", "nope", "beta"]);
    assertEquals(out[0].vm?.status, "stopped");
    assertEquals((out[1].error as { code?: string }).code, "not_found");
    assertEquals((out[2].error as Error).message, `Cannot stop "beta": VM is created`);
    const [set] = await vms.set(["alpha"], { vcpu: 2, disk_size: "256M" }, h.ctx());
    assertEquals([set.vm?.spec.vcpu, set.vm?.spec.diskBytes], [2, 256 * 1024 * 1024]);
    const [grown] = await vms.set(["alpha"], { system_overlay_size: "9G" }, h.ctx());
    assertEquals(grown.vm?.spec.overlayBytes, 9 * 1024 ** 3, "the root disk grows");
    const [shrunk] = await vms.set(["alpha"], { system_overlay_size: "1G" }, h.ctx());
    assert(String(shrunk.error).includes("Cannot shrink the root disk"), String(shrunk.error));
    const killed = await vms.kill(["beta"], "SIGKILL", h.ctx());
    assertEquals(killed[0].vm?.status, "stopped");
    await vms.start(["alpha"], h.ctx());
    assertEquals(await vms.prune(h.ctx()), ["beta"]);
    assertEquals(vms.list().map((v) => v.name), ["alpha"]);
    const row = getVm(h.services.store, vms.find("alpha").id);
    assertEquals(row?.status, "running");
  },
);

gatedTest(
  "a VMM that cannot be killed keeps its tap: it never returns to the pool for another VM (root, netns)",
  needs,
  async () => {
    await using h = await vmHarness();
    const vms = h.services.vms;
    const vm = await vms.create({ name: "unkillable" }, h.ctx());
    const deps = h.services.vmDeps;
    const driver = deps.driver(vm.spec.vmm);
    const kill = driver.kill.bind(driver);
    driver.kill = () => Promise.reject(new Error("Operation not permitted (EPERM)"));
    const tap = vm.runtime.tap;
    try {
      const { vm: after, error } = await teardownVm(vm, deps, h.ctx());
      assert(error instanceof Error && /kept bg-tap/.test(error.message), String(error));
      assert(tap !== undefined);
      assertEquals((await deps.handles.read(after)).tap, tap, "the handle still names the tap");
      assertEquals(h.services.net.taps.idle.includes(tap), false, "not idle in the pool");
    } finally {
      driver.kill = kill;
    }
    const [deleted] = await vms.delete(["unkillable"], h.ctx());
    assert(!deleted.error, String(deleted.error));
  },
);

gatedTest(
  "a teardown step that fails does not stop the others; the handle is kept for a retry (root, netns)",
  needs,
  async () => {
    await using h = await vmHarness();
    const vms = h.services.vms;
    const ops = h.services.vmDeps.ops;
    const vm = await vms.create({ name: "stuck" }, h.ctx());
    const release = ops.releaseRootDisk.bind(ops);
    ops.releaseRootDisk = () => Promise.reject(new Error("device is busy (EBUSY)"));
    try {
      const [out] = await vms.stop(["stuck"], h.ctx());
      assert(
        out.error instanceof Error && out.error.message.includes("root disk: device is busy"),
        String(out.error),
      );
    } finally {
      ops.releaseRootDisk = release;
    }
    const after = vms.find("stuck");
    assertEquals(after.status, "error");
    assertEquals(
      [after.runtime.pid, after.runtime.tap],
      [undefined, undefined],
      "VMM and tap were still released",
    );
    assert(after.runtime.rootDisk, "the root disk handle is kept so a later teardown retries it");
    const left = await leftovers(h);
    assertEquals(left.vmms, [], "the VMM is gone");
    assert(vm.runtime.pid !== undefined);
    const [deleted] = await vms.delete(["stuck"], h.ctx());
    assert(!deleted.error, String(deleted.error));
  },
);

gatedTest(
  "HandleStore.update() changes nothing when handles.json cannot be written (disk before memory) (root, netns)",
  needs,
  async () => {
    await using h = await vmHarness();
    const vm = await h.services.vms.create({ name: "order", no_start: true }, h.ctx());
    const handles = h.services.vmDeps.handles;
    await Deno.remove(vm.runtime.vmDir, { recursive: true });
    await Deno.writeTextFile(vm.runtime.vmDir, "not a directory");
    try {
      await assertRejects(() => handles.update(vm, { tap: "bg-tap77" }));
      assertEquals((await handles.read(vm)).tap, undefined, "memory did not move ahead of disk");
      assertEquals(getVm(h.services.store, vm.id)?.runtime.tap, undefined, "nor did the row");
    } finally {
      await Deno.remove(vm.runtime.vmDir);
      await Deno.mkdir(vm.runtime.vmDir, { recursive: true });
    }
  },
);
