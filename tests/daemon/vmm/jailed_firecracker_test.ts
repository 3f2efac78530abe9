import { instanceFor } from "../../../host/instance.ts";
/**
 * The jailed launch path end to end, with a stand-in jailer (Firecracker's jailer is not
 * installed here): the helper's `launchJailedFirecracker` prepares the chroot and runs
 * `tests/fixtures/fake_jailer.sh`, which behaves as the v1.16 jailer does — names the jail
 * after the real path of the binary, really chroots, makes only the jailer's device nodes,
 * drops to the owner uid — and execs the fake firecracker; the driver then configures and
 * boots the (simulated) guest through the symlinked API socket.
 *
 * Proven: under the system helper's `UMask=0077` and a symlinked firecracker binary, the
 * rendered jailer argv, the chroot contents (hard links at the same absolute paths, VM
 * dir owned by the owner), the launch, liveness and stop through the usual driver steps,
 * the VMM running as the owner uid inside the chroot, the logs kept after the stop, and
 * the chroot's removal; a nodev chroot base and a disk on another filesystem refused.
 * Not proven: the real jailer binary, its pivot_root, cgroups and rlimits.
 */
import { JailedFirecrackerDriver } from "../../../daemon/vmm/jailed_firecracker.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import { parseIpv4 } from "../../../host/net/ipv4.ts";
import { jailPaths, renderJailerArgs } from "../../../host/vmm/firecracker/jailer.ts";
import { jailerBaseDir, vmsDir } from "../../../host/layout.ts";
import { readProcFile } from "../../../host/os/procfs.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "../../fixtures/assert.ts";
import { Netns } from "../../fixtures/netns.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { FAKE_FC } from "../../fixtures/seed_image.ts";
import { elfExecutable } from "../../fixtures/tiny_elf.ts";
import process from "node:process";
import { OWNER, ownerDenoDir, systemRoot } from "../../fixtures/system_root.ts";

const FAKE_JAILER = new URL("../../fixtures/fake_jailer.sh", import.meta.url).pathname;
/** What the daemon probed: the fake reports v1.16.1 by default. */
const FIRECRACKER = { found: true, path: FAKE_FC, version: "1.16.1" } as const;

gatedTest(
  "JailedFirecrackerDriver boots through the helper's jailer launch as the owner uid and removes the jail (root, netns, stand-in jailer)",
  [root(), programs("setpriv", "unshare", "ip")],
  async () => {
    await using sys = await systemRoot();
    await using ns = await Netns.create();
    await using denoDir = await ownerDenoDir();
    const entered = ns.enter();
    const trace = `${sys.root}/jailer-argv.txt`;
    Deno.env.set("FAKE_JAILER_DENO_DIR", denoDir.path);
    Deno.env.set("FAKE_JAILER_TRACE", trace);
    const owner = { uid: OWNER.uid, gid: OWNER.gid };
    const chrootBase = jailerBaseDir(sys.root);
    // The common install: a symlink on PATH to a release binary of another name.
    const fcLink = `${sys.root}/firecracker`;
    await Deno.symlink(FAKE_FC, fcLink);
    const ops = new InProcessOps(sys.layout, {
      owner,
      jailer: { jailerBin: FAKE_JAILER, firecrackerBin: fcLink, chrootBase },
    });
    const driver = new JailedFirecrackerDriver(ops, FIRECRACKER);
    const id = `j${crypto.randomUUID().slice(0, 8)}`;
    const state = sys.layout.stateDir;
    const vmDir = `${vmsDir(sys.layout)}/${id}`;
    let pid: number | undefined;
    try {
      const bridge = `bg-j${id.slice(1, 7)}`;
      const tap = `${instanceFor(sys.layout.stateDir).tapPrefix}${id.charCodeAt(1) % 100}`;
      await ops.ensureBridge({ name: bridge, address: "172.31.77.1/24" });
      await ops.createTap({ name: tap, bridge });
      for (const d of [`${state}/kernels/k`, `${state}/images/i`, vmsDir(sys.layout)]) {
        await Deno.mkdir(d, { recursive: true });
      }
      const kernel = `${state}/kernels/k/vmlinux`;
      await Deno.writeFile(kernel, elfExecutable());
      const base = `${state}/images/i/rootfs.ext4`;
      await Deno.writeFile(base, new Uint8Array(1 << 20));
      await new Deno.Command("chown", { args: ["-R", `${owner.uid}:${owner.gid}`, state] })
        .output();
      const disk = await ops.createRootDisk({ id, baseImage: base, vmDir, cowBytes: 1 << 20 });
      const workDisk = `${vmDir}/work.ext4`;
      await Deno.writeFile(workDisk, new Uint8Array(1 << 20));
      await Deno.chown(workDisk, owner.uid, owner.gid);

      // The system helper runs with UMask=0077 (host/system/units.ts).
      const umask = process.umask(0o077);
      pid = await driver.launch({
        vmId: id,
        vmDir,
        vcpu: 1,
        memoryMib: 128,
        kernel,
        rootDisk: disk.devicePath,
        workDisk,
        tap,
        guestIp: parseIpv4("172.31.77.2") ?? 0,
        vsockCid: 1000 + Math.floor(Math.random() * 50000),
      }).finally(() => process.umask(umask));

      assert(await driver.alive(pid, vmDir), "the driver sees the jailed VMM as alive");
      assertEquals(await driver.findPid(vmDir), pid);
      const status = readProcFile(`/proc/${pid}/status`);
      assertEquals(
        /^Uid:\s+(\d+)/m.exec(status)?.[1],
        String(owner.uid),
        "Firecracker runs as the owner",
      );
      const { chrootDir, pidFile } = jailPaths(chrootBase, FAKE_FC, id);
      assertEquals(pidFile, `${chrootBase}/fake_firecracker.ts/${id}/root/fake_firecracker.ts.pid`);
      assertEquals((await Deno.readTextFile(pidFile)).trim(), String(pid), "the jailer's pid file");
      assertEquals(
        await Deno.readLink(`/proc/${pid}/root`),
        chrootDir,
        "Firecracker runs chrooted in the jail named after the binary's real path",
      );
      assertEquals(
        (await Deno.readTextFile(trace)).trimEnd().split("\n"),
        renderJailerArgs({
          id,
          execFile: FAKE_FC,
          uid: owner.uid,
          gid: owner.gid,
          chrootBaseDir: chrootBase,
          firecrackerArgs: ["--api-sock", `${vmDir}/fc.sock`],
        }),
      );
      for (const f of [kernel, disk.devicePath, workDisk]) {
        assertEquals(
          (await Deno.stat(`${chrootDir}${f}`)).ino,
          (await Deno.stat(f)).ino,
          `${f} is linked`,
        );
      }
      assertEquals(await Deno.realPath(`${vmDir}/fc.sock`), `${chrootDir}${vmDir}/fc.sock`);
      const serial = await Deno.readTextFile(`${vmDir}/serial.log`);
      assert(/fake-guest|Linux version/.test(serial), `the guest booted: ${serial}`);
      await assertRejects(
        () => ops.cleanupJailedFirecracker({ vmId: id }),
        Error,
        "still runs",
      );

      assert(await driver.kill(pid, vmDir, "SIGKILL"));
      assert(await driver.waitExit(pid, vmDir, 10_000));
      pid = undefined;
      await driver.cleanup(vmDir);
      await Deno.lstat(`${chrootBase}/fake_firecracker.ts/${id}`).then(
        () => assert(false, "the jail is gone"),
        () => {},
      );
      for (const name of ["serial.log", "vmm.log"]) {
        assert((await Deno.lstat(`${vmDir}/${name}`)).isFile, `${name} is kept as a file`);
      }
      assertEquals(await Deno.readTextFile(`${vmDir}/serial.log`), serial, "vm logs after a stop");
      assert((await Deno.readTextFile(`${vmDir}/vmm.log`)).length > 0, "vmm.log kept");
    } finally {
      if (pid !== undefined) await driver.kill(pid, vmDir, "SIGKILL").catch(() => false);
      Deno.env.delete("FAKE_JAILER_DENO_DIR");
      Deno.env.delete("FAKE_JAILER_TRACE");
      entered[Symbol.dispose]();
    }
  },
);

gatedTest(
  "launchJailedFirecracker refuses a chroot base on a nodev mount, and a disk on another filesystem than the jail (root, tmpfs)",
  [root(), programs("mount", "umount")],
  async () => {
    await using sys = await systemRoot();
    const owner = { uid: OWNER.uid, gid: OWNER.gid };
    const id = `j${crypto.randomUUID().slice(0, 8)}`;
    const state = sys.layout.stateDir;
    const vmDir = `${vmsDir(sys.layout)}/${id}`;
    await Deno.mkdir(vmDir, { recursive: true });
    const kernel = `${vmDir}/vmlinux`;
    const workDisk = `${vmDir}/work.ext4`;
    await Deno.writeFile(kernel, elfExecutable());
    await Deno.writeFile(workDisk, new Uint8Array(4096));
    await new Deno.Command("chown", { args: ["-R", `${owner.uid}:${owner.gid}`, state] }).output();
    const mnt = `${sys.root}/jail-fs`;
    await Deno.mkdir(mnt, { mode: 0o711 });
    const mount = (...args: string[]) => new Deno.Command("mount", { args }).output();
    assert((await mount("-t", "tmpfs", "-o", "nodev,size=8m", "tmpfs", mnt)).success);
    try {
      const ops = new InProcessOps(sys.layout, {
        owner,
        jailer: { jailerBin: FAKE_JAILER, firecrackerBin: FAKE_FC, chrootBase: mnt },
      });
      const launch = () =>
        ops.launchJailedFirecracker({ vmId: id, vmDir, files: [kernel], disks: [workDisk] });
      await assertRejects(launch, Error, `is mounted nodev, so the jail's /dev/kvm`);
      assert((await mount("-o", "remount,dev", mnt)).success);
      const err = await assertRejects(launch, Error, "a copy would lose the guest's writes");
      assertStringIncludes(err.message, `tmpfs on ${mnt}`);
      assertStringIncludes(err.message, `Cannot put disk "${workDisk}"`);
      const { chrootDir } = jailPaths(mnt, FAKE_FC, id);
      assert((await Deno.stat(`${chrootDir}${kernel}`)).isFile, "the read-only kernel was copied");
    } finally {
      await new Deno.Command("umount", { args: ["-l", mnt] }).output();
    }
  },
);
