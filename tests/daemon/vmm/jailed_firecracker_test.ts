/**
 * The jailed launch path end to end, with a stand-in jailer (Firecracker's jailer is not
 * installed here): the helper's `launchJailedFirecracker` prepares the chroot and runs
 * `tests/fixtures/fake_jailer.sh`, which checks the command line, imitates the chroot for
 * the VM directory and execs the fake firecracker as the owner uid; the driver then
 * configures and boots the (simulated) guest through the symlinked API socket.
 *
 * Proven: the rendered jailer argv, the chroot contents (hard links at the same absolute
 * paths, VM dir owned by the owner), the launch, liveness and stop through the usual
 * driver steps, the VMM running as the owner uid, and the chroot's removal. Not proven:
 * the real jailer's chroot/pivot_root, device nodes, cgroups and its exact argv parsing.
 */
import { JailedFirecrackerDriver } from "../../../daemon/vmm/jailed_firecracker.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import { parseIpv4 } from "../../../host/net/ipv4.ts";
import { jailPaths, renderJailerArgs } from "../../../host/vmm/firecracker/jailer.ts";
import { jailerBaseDir, vmsDir } from "../../../host/layout.ts";
import { readProcFile } from "../../../host/os/procfs.ts";
import { assert, assertEquals } from "../../fixtures/assert.ts";
import { Netns } from "../../fixtures/netns.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { FAKE_FC } from "../../fixtures/seed_image.ts";
import { OWNER, ownerDenoDir, systemRoot } from "../../fixtures/system_root.ts";

const FAKE_JAILER = new URL("../../fixtures/fake_jailer.sh", import.meta.url).pathname;

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
    const ops = new InProcessOps(sys.layout, {
      owner,
      jailer: { jailerBin: FAKE_JAILER, firecrackerBin: FAKE_FC, chrootBase },
    });
    const driver = new JailedFirecrackerDriver(ops, FAKE_FC);
    const id = `j${crypto.randomUUID().slice(0, 8)}`;
    const state = sys.layout.stateDir;
    const vmDir = `${vmsDir(sys.layout)}/${id}`;
    let pid: number | undefined;
    try {
      const bridge = `bg-j${id.slice(1, 7)}`;
      const tap = `bg-tap${id.slice(1, 7)}`;
      await ops.ensureBridge({ name: bridge, address: "172.31.77.1/24" });
      await ops.createTap({ name: tap, bridge });
      for (const d of [`${state}/kernels/k`, `${state}/images/i`, vmsDir(sys.layout)]) {
        await Deno.mkdir(d, { recursive: true });
      }
      const kernel = `${state}/kernels/k/vmlinux`;
      await Deno.writeFile(kernel, new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]));
      const base = `${state}/images/i/rootfs.ext4`;
      await Deno.writeFile(base, new Uint8Array(1 << 20));
      await new Deno.Command("chown", { args: ["-R", `${owner.uid}:${owner.gid}`, state] })
        .output();
      const disk = await ops.createRootDisk({ id, baseImage: base, vmDir, cowBytes: 1 << 20 });
      const workDisk = `${vmDir}/work.ext4`;
      await Deno.writeFile(workDisk, new Uint8Array(1 << 20));
      await Deno.chown(workDisk, owner.uid, owner.gid);

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
      });

      assert(await driver.alive(pid, vmDir), "the driver sees the jailed VMM as alive");
      assertEquals(await driver.findPid(vmDir), pid);
      const status = readProcFile(`/proc/${pid}/status`);
      assertEquals(
        /^Uid:\s+(\d+)/m.exec(status)?.[1],
        String(owner.uid),
        "Firecracker runs as the owner",
      );
      const { chrootDir } = jailPaths(chrootBase, FAKE_FC, id);
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

      assert(await driver.kill(pid, vmDir, "SIGKILL"));
      assert(await driver.waitExit(pid, vmDir, 10_000));
      pid = undefined;
      await driver.cleanup(vmDir);
      await Deno.lstat(`${chrootBase}/fake_firecracker.ts/${id}`).then(
        () => assert(false, "the jail is gone"),
        () => {},
      );
    } finally {
      if (pid !== undefined) await driver.kill(pid, vmDir, "SIGKILL").catch(() => false);
      Deno.env.delete("FAKE_JAILER_DENO_DIR");
      Deno.env.delete("FAKE_JAILER_TRACE");
      entered[Symbol.dispose]();
    }
  },
);
