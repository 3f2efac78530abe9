import { instanceFor } from "../../../host/instance.ts";
import { assert, assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { Netns } from "../../fixtures/netns.ts";
import { BangerError } from "../../../host/errors.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import { attachLoop, detachLoop, listLoops, loopBackingFile } from "../../../host/disk/loop.ts";
import {
  parseOpArgs,
  type PrivilegedOps,
  PrivilegedOpsError,
} from "../../../host/privileged/privileged_ops.ts";

const PREFIX = "bgt-privops-";

interface Fixture {
  dir: string;
  layout: { stateDir: string; cacheDir: string; runtimeDir: string };
  ops: PrivilegedOps;
  /** A symlink inside stateDir pointing outside banger's directories. */
  evil: string;
}

async function withOps(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: PREFIX });
  try {
    const layout = { stateDir: `${dir}/state`, cacheDir: `${dir}/cache`, runtimeDir: `${dir}/run` };
    for (const d of Object.values(layout)) await Deno.mkdir(d, { recursive: true });
    await Deno.mkdir(`${dir}/outside`);
    await Deno.writeTextFile(`${dir}/outside/file`, "secret");
    const evil = `${layout.stateDir}/evil`;
    await Deno.symlink(`${dir}/outside`, evil);
    await fn({ dir, layout, ops: new InProcessOps(layout), evil });
  } finally {
    for (const l of listLoops()) if (l.backingFile.startsWith(dir)) detachLoop(l.path);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts the call is refused with `code` by a validation error. */
async function refused(
  call: () => Promise<unknown>,
  code: "invalid_argument" | "permission_denied",
) {
  const err = await assertRejects(call, BangerError);
  assertEquals(err.code, code, `${err.name}: ${err.message}`);
}

Deno.test("parseOpArgs() names the method and field it refuses", () => {
  const err = (() => {
    try {
      parseOpArgs("deleteTap", { name: "eth0" });
    } catch (e) {
      return e;
    }
  })();
  assert(err instanceof PrivilegedOpsError);
  assertEquals(err.code, "invalid_argument");
  assert(err.message.startsWith('Cannot run deleteTap: "name" must be a tap name'), err.message);
});

gatedTest(
  "InProcessOps refuses bad interface names, addresses and ids before touching anything (root, netns)",
  [root(), programs("ip", "nft")],
  async (t) => {
    // In a namespace of our own, on names that exist nowhere: a validation regression must
    // not reach the host's interfaces or disks, and the namespace shows what was touched.
    await using ns = await Netns.create();
    using _inside = ns.enter();
    await withOps(async ({ ops }) => {
      const cases: [string, () => Promise<unknown>][] = [
        [
          "ensureBridge foreign name",
          () => ops.ensureBridge({ name: "xq-foreign0", address: "172.16.0.1/24" }),
        ],
        [
          "ensureBridge tap name",
          () => ops.ensureBridge({ name: "bg-tap0", address: "172.16.0.1/24" }),
        ],
        [
          "ensureBridge no prefix length",
          () => ops.ensureBridge({ name: "bg-br0", address: "172.16.0.1" }),
        ],
        [
          "ensureBridge injected text",
          () => ops.ensureBridge({ name: "bg-br0", address: "172.16.0.1/24\nx" }),
        ],
        ["createTap foreign name", () => ops.createTap({ name: "tap0", bridge: "bg-br0" })],
        ["createTap 16 bytes", () => ops.createTap({ name: "bg-tap-123456789", bridge: "bg-br0" })],
        [
          "createTap foreign bridge",
          () => ops.createTap({ name: "bg-tap0", bridge: "xq-foreign1" }),
        ],
        [
          "createTap negative owner",
          () => ops.createTap({ name: "bg-tap0", bridge: "bg-br0", owner: -1 }),
        ],
        ["deleteTap foreign name", () => ops.deleteTap({ name: "xq-foreign2" })],
        [
          "addNat bad id",
          () => ops.addNat({ vmId: "a\nb", guestIp: "172.16.0.2", bridge: "bg-br0" }),
        ],
        [
          "addNat CIDR as address",
          () => ops.addNat({ vmId: "a", guestIp: "172.16.0.0/24", bridge: "bg-br0" }),
        ],
        [
          "addNat foreign bridge",
          () => ops.addNat({ vmId: "a", guestIp: "172.16.0.2", bridge: "xq-foreign3" }),
        ],
        ["removeNat bad id", () => ops.removeNat({ vmId: "-a" })],
        ["detachLoop not a loop", () => ops.detachLoop({ path: "/dev/xq-not-a-loop" })],
        ["unknown field", () => ops.deleteTap({ name: "bg-tap0", force: true } as never)],
      ];
      for (const [name, call] of cases) {
        await t.step(name, () => refused(call, "invalid_argument"));
      }
    });
    const links = await ns.run(["ip", "-j", "link", "show"]);
    assertEquals(
      (JSON.parse(links.stdout) as { ifname: string }[]).map((l) => l.ifname),
      ["lo"],
      "no interface was made",
    );
    const tables = await ns.run(["nft", "-j", "list", "tables"]);
    assertEquals(
      (JSON.parse(tables.stdout).nftables as Record<string, unknown>[]).filter((e) => "table" in e),
      [],
      "no nft table was made",
    );
  },
);

Deno.test("InProcessOps refuses paths outside banger's directories or through symlinks", async (t) => {
  await withOps(async ({ dir, layout, ops, evil }) => {
    const s = layout.stateDir;
    await Deno.mkdir(`${s}/vms/a`, { recursive: true });
    await Deno.writeTextFile(`${s}/vms/a/x`, "");
    const denied: [string, () => Promise<unknown>][] = [
      [
        "createRootDisk base outside",
        () =>
          ops.createRootDisk({
            id: "a",
            baseImage: "/etc/passwd",
            vmDir: `${s}/vms/a`,
            cowBytes: 1 << 30,
          }),
      ],
      [
        "createRootDisk base via symlink",
        () =>
          ops.createRootDisk({
            id: "a",
            baseImage: `${evil}/file`,
            vmDir: `${s}/vms/a`,
            cowBytes: 1 << 30,
          }),
      ],
      [
        "createRootDisk vmDir via symlink",
        () =>
          ops.createRootDisk({
            id: "a",
            baseImage: `${s}/vms/a/x`,
            vmDir: `${evil}`,
            cowBytes: 1 << 30,
          }),
      ],
      [
        "createWorkDisk outside",
        () => ops.createWorkDisk({ path: `${dir}/outside/work.ext4`, sizeBytes: 1 << 26 }),
      ],
      [
        "createWorkDisk via symlink",
        () => ops.createWorkDisk({ path: `${evil}/work.ext4`, sizeBytes: 1 << 26 }),
      ],
      [
        "createWorkDisk fromDir outside",
        () => ops.createWorkDisk({ path: `${s}/w.ext4`, sizeBytes: 1 << 26, fromDir: "/etc" }),
      ],
      ["writeExt4 image outside", () => ops.writeExt4({ image: `${dir}/outside/file`, ops: [] })],
      [
        "readExt4File image via symlink",
        () => ops.readExt4File({ image: `${evil}/file`, path: "/etc/hostname" }),
      ],
      ["checkExt4 /dev/sda", () => ops.checkExt4({ image: "/dev/sda" })],
      ["growExt4 outside", () => ops.growExt4({ image: "/etc/passwd", sizeBytes: 1 << 30 })],
      [
        "releaseRootDisk vmFile outside",
        () =>
          ops.releaseRootDisk({
            handle: {
              strategy: "sparse-copy",
              devicePath: "/etc/passwd",
              baseImage: `${s}/b`,
              vmFile: "/etc/passwd",
              loops: [],
              dmNames: [],
              sizeBytes: 0,
            },
          }),
      ],
      [
        "releaseRootDisk loop backing outside",
        () =>
          ops.releaseRootDisk({
            handle: {
              strategy: "dm-snapshot",
              devicePath: "/dev/dm-0",
              baseImage: `${s}/b`,
              vmFile: `${s}/vms/a/root.cow`,
              loops: [{ path: "/dev/loop0", backingFile: "/var/lib/x.img" }],
              dmNames: [],
              sizeBytes: 0,
            },
          }),
      ],
      ["readProcFile outside /proc", () => ops.readProcFile({ path: "/etc/shadow" })],
      ["readProcFile escaping /proc", () => ops.readProcFile({ path: "/proc/../etc/shadow" })],
    ];
    for (const [name, call] of denied) {
      await t.step(name, () => refused(call, "permission_denied"));
    }
    await t.step("nothing was created outside", async () => {
      assertEquals([...Deno.readDirSync(`${dir}/outside`)].map((e) => e.name), ["file"]);
      assertEquals(await Deno.readTextFile(`${dir}/outside/file`), "secret");
    });
    const invalid: [string, () => Promise<unknown>][] = [
      [
        "createRootDisk dotdot",
        () =>
          ops.createRootDisk({
            id: "a",
            baseImage: `${s}/../x`,
            vmDir: `${s}/vms/a`,
            cowBytes: 1 << 30,
          }),
      ],
      [
        "createRootDisk tiny cow",
        () =>
          ops.createRootDisk({ id: "a", baseImage: `${s}/x`, vmDir: `${s}/vms/a`, cowBytes: 4096 }),
      ],
      [
        "createRootDisk bad id",
        () =>
          ops.createRootDisk({
            id: "../a",
            baseImage: `${s}/x`,
            vmDir: `${s}/vms/a`,
            cowBytes: 1 << 30,
          }),
      ],
      [
        "releaseRootDisk foreign dm name",
        () =>
          ops.releaseRootDisk({
            handle: {
              strategy: "dm-snapshot",
              devicePath: "/dev/dm-0",
              baseImage: `${s}/b`,
              vmFile: `${s}/vms/a/root.cow`,
              loops: [],
              dmNames: ["vg0-root"],
              sizeBytes: 0,
            },
          }),
      ],
      [
        "releaseRootDisk non-loop device",
        () =>
          ops.releaseRootDisk({
            handle: {
              strategy: "dm-snapshot",
              devicePath: "/dev/dm-0",
              baseImage: `${s}/b`,
              vmFile: `${s}/vms/a/root.cow`,
              loops: [{ path: "/dev/sda", backingFile: `${s}/b` }],
              dmNames: [],
              sizeBytes: 0,
            },
          }),
      ],
      [
        "releaseRootDisk foreign device path",
        () =>
          ops.releaseRootDisk({
            handle: {
              strategy: "sparse-copy",
              devicePath: "/dev/sda",
              baseImage: `${s}/b`,
              vmFile: `${s}/vms/a/root.ext4`,
              loops: [],
              dmNames: [],
              sizeBytes: 0,
            },
          }),
      ],
      [
        "writeExt4 unknown op",
        () => ops.writeExt4({ image: `${s}/x`, ops: [{ kind: "chmod", path: "/x" } as never] }),
      ],
      ["growExt4 negative", () => ops.growExt4({ image: `${s}/x`, sizeBytes: -1 })],
      [
        "readExt4File bad encoding",
        () => ops.readExt4File({ image: `${s}/x`, path: "/x", encoding: "hex" as never }),
      ],
    ];
    for (const [name, call] of invalid) {
      await t.step(name, () => refused(call, "invalid_argument"));
    }
  });
});

gatedTest(
  "InProcessOps refuses a hostFile outside banger's directories and writes nothing (root)",
  [
    root(),
    programs("mkfs.ext4", "debugfs"),
  ],
  async () => {
    await withOps(async ({ layout, ops }) => {
      const image = `${layout.stateDir}/work.ext4`;
      await ops.createWorkDisk({ path: image, sizeBytes: 1 << 25 });
      const before = await Deno.readFile(image);
      await refused(
        () =>
          ops.writeExt4({
            image,
            ops: [{ kind: "writeFile", path: "/shadow", hostFile: "/etc/shadow" }],
          }),
        "permission_denied",
      );
      assertEquals(await Deno.readFile(image), before);
    });
  },
);

gatedTest("InProcessOps.detachLoop() refuses a loop backed outside banger's directories (root)", [
  root(),
], async () => {
  await withOps(async ({ dir, layout, ops }) => {
    await Deno.truncate(`${dir}/outside/file`, 1 << 20);
    using foreign = attachLoop(`${dir}/outside/file`, { readOnly: true });
    await refused(() => ops.detachLoop({ path: foreign.device.path }), "permission_denied");
    assertEquals(loopBackingFile(foreign.device.path), `${dir}/outside/file`, "still attached");
    assert(!(await ops.listLoops()).some((l) => l.path === foreign.device.path));
    await Deno.writeFile(`${layout.stateDir}/mine.img`, new Uint8Array(1 << 20));
    using mine = attachLoop(`${layout.stateDir}/mine.img`, { readOnly: true });
    assertEquals((await ops.listLoops()).map((l) => l.path), [mine.device.path]);
    assertEquals(await ops.detachLoop({ path: mine.device.path }), true);
    mine.close();
    assertEquals(await ops.detachLoop({ path: mine.device.path }), false);
    detachLoop(foreign.device.path);
  });
});

gatedTest("InProcessOps end to end: work disk, ext4 writes, root disk and release (root)", [
  root(),
  programs("mkfs.ext4", "debugfs", "e2fsck", "resize2fs"),
], async () => {
  await withOps(async ({ layout, ops }) => {
    const s = layout.stateDir;
    await Deno.mkdir(`${s}/images/deb`, { recursive: true });
    await Deno.mkdir(`${s}/vms/v1`, { recursive: true });
    const base = `${s}/images/deb/rootfs.ext4`;
    await ops.createWorkDisk({ path: base, sizeBytes: 1 << 25, label: "rootfs" });
    await ops.writeExt4({
      image: base,
      ops: [{ kind: "writeFile", path: "/etc/hostname", text: "base\n" }],
    });
    const handle = await ops.createRootDisk({
      id: "v1",
      baseImage: base,
      vmDir: `${s}/vms/v1`,
      cowBytes: 1 << 20, // below the image's size: the copy keeps it, and grows below
    });
    await ops.writeExt4({
      image: handle.vmFile,
      ops: [{ kind: "writeFile", path: "/etc/hostname", text: "v1\n" }],
    });
    assertEquals(await ops.readExt4File({ image: handle.vmFile, path: "/etc/hostname" }), "v1\n");
    assertEquals(
      await ops.readExt4File({ image: base, path: "/etc/hostname", encoding: "base64" }),
      btoa("base\n"),
    );
    await ops.growExt4({ image: handle.vmFile, sizeBytes: 1 << 26 });
    assertEquals((await ops.checkExt4({ image: handle.vmFile })).clean, true);
    const report = await ops.rootDiskStrategy({ dir: `${s}/vms` });
    assert(["dm-snapshot", "reflink", "sparse-copy"].includes(report.strategy));
    await ops.releaseRootDisk({ handle: JSON.parse(JSON.stringify(handle)), deleteFiles: true });
    await assertRejects(() => Deno.stat(handle.vmFile), Deno.errors.NotFound);
    assert((await ops.readProcFile({ path: `/proc/${Deno.pid}/stat` })).startsWith(`${Deno.pid} `));
  });
});

gatedTest("privileged ops tests leave no loop device behind (root)", [root()], () => {
  assertEquals(listLoops().filter((l) => l.backingFile.includes(`/${PREFIX}`)), []);
});

/** `sh` blocked on stdin, naming `file` in its argv; it starts no child of its own. */
function blocker(file: string, prefix: string[] = []): Deno.ChildProcess {
  const argv = [...prefix, "sh", "-c", "read x; :", "blocker", file];
  return new Deno.Command(argv[0], { args: argv.slice(1), stdin: "piped", stdout: "null" })
    .spawn();
}

async function reap(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
  await child.status;
}

Deno.test("InProcessOps.signalVmm() signals only a process naming a file directly in the VM dir", async (t) => {
  await withOps(async ({ dir, layout, ops }) => {
    const vmDir = `${layout.stateDir}/vms/a`;
    await Deno.mkdir(vmDir, { recursive: true });
    const vmm = blocker(`${vmDir}/fc.sock`);
    const other = blocker(`${dir}/outside/file`);
    try {
      await t.step("a process naming no file of the VM dir is refused", async () => {
        await refused(
          () => ops.signalVmm({ pid: other.pid, signal: "SIGTERM", vmDir }),
          "permission_denied",
        );
      });
      await t.step("a VM dir outside banger's directories is refused", async () => {
        await refused(
          () => ops.signalVmm({ pid: other.pid, signal: "SIGTERM", vmDir: `${dir}/outside` }),
          "permission_denied",
        );
      });
      await t.step("a file below a subdirectory does not count", async () => {
        await refused(
          () => ops.signalVmm({ pid: vmm.pid, signal: "SIGTERM", vmDir: `${layout.stateDir}/vms` }),
          "permission_denied",
        );
      });
      await t.step("the owner check refuses a VMM of another uid", async () => {
        const owned = new InProcessOps(layout, { owner: { uid: 65534, gid: 65534 } });
        const err = await assertRejects(
          () => owned.signalVmm({ pid: vmm.pid, signal: "SIGTERM", vmDir }),
          PrivilegedOpsError,
        );
        assertEquals(err.code, "permission_denied");
        assert(err.message.includes("runs as uid 0"), err.message);
      });
      await t.step("unknown signals and pids below 2 are malformed", async () => {
        await refused(
          () => ops.signalVmm({ pid: vmm.pid, signal: "SIGSEGV", vmDir }),
          "invalid_argument",
        );
        await refused(() => ops.signalVmm({ pid: 1, signal: "TERM", vmDir }), "invalid_argument");
      });
      await t.step("refused processes were not signalled", async () => {
        const stat = await ops.readProcFile({ path: `/proc/${other.pid}/stat` });
        assert(stat.startsWith(`${other.pid} `), "the other process is still there");
      });
      await t.step("the VMM is signalled; a gone process gives false", async () => {
        assertEquals(await ops.signalVmm({ pid: vmm.pid, signal: "term", vmDir }), true);
        assertEquals((await vmm.status).signal, "SIGTERM");
        assertEquals(await ops.signalVmm({ pid: vmm.pid, signal: "SIGTERM", vmDir }), false);
      });
    } finally {
      await reap(vmm);
      await reap(other);
    }
  });
});

Deno.test("InProcessOps.probeHost() reports devices and CPU facts, and takes no arguments", async () => {
  await withOps(async ({ ops }) => {
    const facts = await ops.probeHost({});
    assertEquals(typeof facts.devices.netTun, "boolean");
    assert(facts.kvm.cpuFlags.length > 0);
    await refused(() => ops.probeHost({ dir: "/" } as never), "invalid_argument");
  });
});

Deno.test("launchJailedFirecracker puts no device in a jail but the VM's own root disk (bg-root-<id>)", async () => {
  await withOps(async ({ layout }) => {
    const ops = new InProcessOps(layout, {
      owner: { uid: 65534, gid: 65534 },
      jailer: { jailerBin: "/bin/false", firecrackerBin: "/bin/false", chrootBase: "/nonexistent" },
    });
    // On an LVM or LUKS host dm-0 is the host's own disk: it must never reach a jail.
    for (const device of ["/dev/dm-0", "/dev/dm-4095"]) {
      const err = await assertRejects(
        () =>
          ops.launchJailedFirecracker({
            vmId: "v1",
            vmDir: `${layout.stateDir}/vms/v1`,
            files: [],
            devices: [device],
          }),
        PrivilegedOpsError,
        "not the root disk banger made for that VM (bg-root-v1)",
      );
      assertEquals(err.code, "permission_denied");
    }
  });
});

gatedTest(
  "the helper makes only its configured bridge and address, taps on it for the owner's group, NAT inside its CIDR (root, netns)",
  [root(), programs("ip", "nft")],
  async (t) => {
    await using ns = await Netns.create();
    using _inside = ns.enter();
    await withOps(async ({ layout }) => {
      const network = { bridgeName: "bg-brh", bridgeIp: "172.30.9.1", cidr: "172.30.9.0/24" };
      const ops = new InProcessOps(layout, { owner: { uid: 65534, gid: 65534 }, network });
      const tap7 = `${instanceFor(layout.stateDir).tapPrefix}7`;
      const refusals: [string, () => Promise<unknown>][] = [
        ["another bridge", () => ops.ensureBridge({ name: "bg-brx", address: "172.30.9.1/24" })],
        [
          "the LAN gateway's address",
          () => ops.ensureBridge({ name: "bg-brh", address: "192.168.1.1/24" }),
        ],
        [
          "a more specific route",
          () => ops.ensureBridge({ name: "bg-brh", address: "172.30.9.1/30" }),
        ],
        ["a tap on another bridge", () => ops.createTap({ name: tap7, bridge: "bg-brx" })],
        [
          "another instance's tap name",
          () => ops.createTap({ name: "bg-tap7", bridge: "bg-brh", group: 65534 }),
        ],
        [
          "a tap for another group",
          () => ops.createTap({ name: tap7, bridge: "bg-brh", group: 0 }),
        ],
        [
          "NAT outside the CIDR",
          () => ops.addNat({ vmId: "v1", guestIp: "10.0.0.5", bridge: "bg-brh" }),
        ],
        [
          "NAT of the gateway",
          () => ops.addNat({ vmId: "v1", guestIp: "172.30.9.1", bridge: "bg-brh" }),
        ],
        [
          "NAT behind another bridge",
          () => ops.addNat({ vmId: "v1", guestIp: "172.30.9.5", bridge: "bg-brx" }),
        ],
      ];
      for (const [name, call] of refusals) {
        await t.step(name, () => refused(call, "permission_denied"));
      }
      const links = await ns.run(["ip", "-j", "link", "show"]);
      assertEquals(
        (JSON.parse(links.stdout) as { ifname: string }[]).map((l) => l.ifname),
        ["lo"],
        "nothing was made",
      );
      await t.step("its own bridge, tap and NAT are made", async () => {
        await ops.ensureBridge({ name: "bg-brh", address: "172.30.9.1/24" });
        await ops.createTap({ name: tap7, bridge: "bg-brh", group: 65534 });
        await ops.addNat({ vmId: "v1", guestIp: "172.30.9.5", bridge: "bg-brh" });
        assertEquals((await ops.listNat()).map((n) => n.vmId), ["v1"]);
        await ops.removeNat({ vmId: "v1" });
        await ops.deleteTap({ name: tap7 });
      });
    });
  },
);
