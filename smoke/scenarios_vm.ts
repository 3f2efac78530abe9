/**
 * VM lifecycle scenarios: run, exit codes, invalid specs, concurrency, set, restart,
 * kill, prune, and the pull-once guarantee.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "../tests/fixtures/assert.ts";
import { SMOKE_IMAGE_FRESH } from "./artifacts.ts";
import { diskHolders, expectCode, expectOk, json, type Scenario } from "./scenario.ts";

interface VmJson {
  id: string;
  name: string;
  status: string;
  pid?: number;
  tap?: string;
  guest_ip: string;
}

/** The lifecycle scenarios. */
export const VM_SCENARIOS: Scenario[] = [
  {
    name: "bare",
    description: "vm run --rm -- echo ok prints ok and leaves no VM",
    class: "pure",
    async run(c) {
      const name = c.vmName("bare");
      const r = expectOk(
        await c.banger(["vm", "run", "--rm", "--name", name, "--", "echo", "ok"]),
        "vm run",
      );
      assertEquals(r.stdout.trim(), "ok");
      const list = json<VmJson[]>(expectOk(await c.banger(["vm", "list", "--json"]), "vm list"));
      assert(!list.some((v) => v.name === name), "--rm deleted the VM");
    },
  },
  {
    name: "bare_firecracker",
    description:
      "vm run --rm -- uname -r boots a real guest through the fake firecracker (QEMU mode)",
    class: "pure",
    vmm: "firecracker",
    async run(c) {
      const r = expectOk(
        await c.banger(["vm", "run", "--rm", "--name", c.vmName("fc"), "--", "uname", "-r"]),
        "vm run",
      );
      assertStringIncludes(r.stdout, "cloud-amd64");
    },
  },
  {
    name: "exit_code",
    description: "vm run -- sh -c 'exit 42' exits 42",
    class: "pure",
    async run(c) {
      const r = await c.banger([
        "vm",
        "run",
        "--rm",
        "--name",
        c.vmName("exit"),
        "--",
        "sh",
        "-c",
        "exit 42",
      ]);
      expectCode(r, 42, "vm run -- sh -c 'exit 42'");
    },
  },
  {
    name: "invalid_spec",
    description:
      "--vcpu 0, a bad name and a bad size are rejected and leave no row, named or auto-named",
    class: "pure",
    async run(c) {
      // Every other scenario names its VMs s-…: an auto-named row can only come from here.
      const autoNamed = async () =>
        json<VmJson[]>(await c.banger(["vm", "list", "--json"])).filter((v) =>
          !v.name.startsWith("s-")
        );
      const before = (await autoNamed()).map((v) => v.id);
      const named = c.vmName("inv");
      const cases = [
        ["--vcpu", "0"],
        ["--disk-size", "4XB"],
        ["--name", "Bad_Name"],
        ["--name", named, "--vcpu", "0"],
        ["--name", named, "--memory", "1"],
      ];
      for (const args of cases) {
        const r = await c.banger(["vm", "create", ...args]);
        expectCode(r, 1, `vm create ${args.join(" ")}`);
        assertStringIncludes(r.stderr, "error: ");
      }
      const list = json<VmJson[]>(await c.banger(["vm", "list", "--json"]));
      assert(!list.some((v) => v.name === "Bad_Name" || v.name === named), "no named row left");
      const leaked = (await autoNamed()).filter((v) => !before.includes(v.id));
      assertEquals(leaked.map((v) => `${v.name} (${v.status})`), [], "no auto-named row left");
    },
  },
  {
    name: "concurrent_runs",
    description: "two vm run --rm at once both succeed",
    class: "pure",
    async run(c) {
      const [a, b] = await Promise.all([
        c.banger(["vm", "run", "--rm", "--name", c.vmName("cc-a"), "--", "hostname"]),
        c.banger(["vm", "run", "--rm", "--name", c.vmName("cc-b"), "--", "hostname"]),
      ]);
      expectOk(a, "first run");
      expectOk(b, "second run");
      assert(a.stdout.trim() !== b.stdout.trim(), "two different guests answered");
    },
  },
  {
    name: "vm_set",
    description: "vm set --vcpu 2 → 4 is visible in the guest",
    class: "pure",
    async run(c) {
      const name = c.vmName("set");
      expectOk(await c.banger(["vm", "create", "--name", name, "--vcpu", "2"]), "create");
      assertEquals((await c.ok(["vm", "ssh", name, "--", "nproc"])).stdout.trim(), "2");
      await c.ok(["vm", "stop", name]);
      await c.ok(["vm", "set", name, "--vcpu", "4"]);
      await c.ok(["vm", "start", name]);
      assertEquals((await c.ok(["vm", "ssh", name, "--", "nproc"])).stdout.trim(), "4");
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "root_size",
    description:
      "/ in a fresh VM is as large as its root size, and vm set growing it shows after a restart",
    class: "pure",
    async run(c) {
      const name = c.vmName("root");
      const gib = 1024 ** 3;
      const rootSize = async () =>
        Number(
          (await c.ok(["vm", "ssh", name, "--", "df", "-B1", "--output=size", "/"])).stdout
            .trim().split("\n").at(-1),
        );
      expectOk(
        await c.banger(["vm", "create", "--name", name, "--system-overlay-size", "3G"]),
        "create",
      );
      const first = await rootSize();
      assert(first >= 0.9 * 3 * gib, `df / shows ${first} bytes of a 3 GiB root`);
      await c.ok(["vm", "stop", name]);
      await c.ok(["vm", "set", name, "--system-overlay-size", "4G"]);
      await c.ok(["vm", "start", name]);
      const grown = await rootSize();
      assert(grown >= 0.9 * 4 * gib, `df / shows ${grown} bytes of a 4 GiB root after vm set`);
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "restart_boot_id",
    description: "vm restart gives a new boot id",
    class: "pure",
    async run(c) {
      const name = c.vmName("rst");
      await c.ok(["vm", "create", "--name", name]);
      const bootId = ["vm", "ssh", name, "--", "cat", "/proc/sys/kernel/random/boot_id"];
      const before = (await c.ok(bootId)).stdout.trim();
      await c.ok(["vm", "restart", name]);
      const after = (await c.ok(bootId)).stdout.trim();
      assert(before && after && before !== after, `boot ids ${before} / ${after}`);
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "kill",
    description: "vm kill leaves the VM stopped with its VMM gone and disks released",
    class: "pure",
    async run(c) {
      const name = c.vmName("kill");
      const created = json<VmJson>(await c.ok(["vm", "create", "--name", name, "--json"]));
      await c.ok(["vm", "kill", name]);
      const shown = json<VmJson>(await c.ok(["vm", "show", name, "--json"]));
      assertEquals([shown.status, shown.pid, shown.tap], ["stopped", undefined, undefined]);
      const ps = await c.env.exec([
        "sh",
        "-c",
        `kill -0 ${created.pid} 2>/dev/null && echo alive || echo gone`,
      ]);
      assertEquals(ps.stdout.trim(), "gone");
      assertEquals(await diskHolders(c, created.id), [], "nothing holds its disks");
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "prune",
    description: "vm prune -f deletes stopped VMs and keeps running ones",
    class: "global",
    async run(c) {
      const up = c.vmName("pr-up");
      const down = c.vmName("pr-down");
      await c.ok(["vm", "create", "--name", up]);
      await c.ok(["vm", "create", "--name", down, "--no-start"]);
      const r = await c.ok(["vm", "prune", "-f"]);
      assertStringIncludes(r.stdout, `deleted ${down}`);
      const names = json<VmJson[]>(await c.ok(["vm", "list", "--json"])).map((v) => v.name);
      assert(names.includes(up) && !names.includes(down), `after prune: ${names}`);
      await c.ok(["vm", "delete", "-f", up]);
    },
  },
  {
    name: "pull_once",
    description: "parallel vm create of one missing image pulls it once",
    class: "global",
    async run(c) {
      const before = (await c.env.mirrorCounts())["/image.tar.zst"] ?? 0;
      const names = [c.vmName("po-a"), c.vmName("po-b")];
      const results = await Promise.all(
        names.map((n) =>
          c.banger(["vm", "create", "--name", n, "--image", SMOKE_IMAGE_FRESH, "--no-start"])
        ),
      );
      results.forEach((r, i) => expectOk(r, `create ${names[i]}`));
      const after = (await c.env.mirrorCounts())["/image.tar.zst"] ?? 0;
      assertEquals(after - before, 1, "one download for two creates");
      await c.ok(["vm", "delete", "-f", ...names]);
      await c.ok(["image", "delete", SMOKE_IMAGE_FRESH]);
    },
  },
];
