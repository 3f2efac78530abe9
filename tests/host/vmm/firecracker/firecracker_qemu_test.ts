/**
 * The Firecracker driver booting a real guest: the fake firecracker in QEMU mode runs the
 * configured kernel, initrd and disk under `qemu-system-x86_64 -M microvm` (TCG).
 * Needs the cached guest artifacts (tests/fixtures/guest_artifacts.ts) and QEMU.
 */

import { Firecracker } from "../../../../host/vmm/firecracker/firecracker.ts";
import type { FirecrackerVmSpec } from "../../../../host/vmm/firecracker/config.ts";
import { renderKernelCmdline } from "../../../../host/vmm/kernel_cmdline.ts";
import { InProcessOps } from "../../../../host/privileged/in_process_ops.ts";
import { FIRECRACKER_STOP } from "../../../../daemon/vmm/firecracker.ts";
import { readProcFileIfExists } from "../../../../host/os/procfs.ts";
import { assert, assertEquals } from "../../../fixtures/assert.ts";
import { FAKE_FIRECRACKER } from "../../../fixtures/fake_firecracker.ts";
import { guestArtifacts, guestArtifactsRequirements } from "../../../fixtures/guest_artifacts.ts";
import { gatedTest, programs } from "../../../fixtures/requires.ts";
import { call } from "../../../fixtures/fake_firecracker/spawn.ts";

const NEEDS = [...guestArtifactsRequirements(), programs("qemu-system-x86_64", "setpriv", "cp")];
const QEMU_ENV = { FAKE_FC_MODE: "qemu" };
/** `/proc` reads and signals for adopted VMMs: in-process, with the VM dirs under /tmp. */
const procs = new InProcessOps({ stateDir: "/tmp", cacheDir: "/tmp", runtimeDir: "/tmp" });

async function withVmDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgt-fcq-" });
  try {
    await fn(dir);
  } finally {
    const vmm = await Firecracker.adopt(dir, { procs });
    if (vmm && await vmm.kill("SIGKILL")) await vmm.waitForExit(10_000);
    await Deno.remove(dir, { recursive: true });
  }
}

async function spec(dir: string, rootDisk: string): Promise<FirecrackerVmSpec> {
  const { vmlinux } = await guestArtifacts();
  // A private copy of the initrd makes this VM's QEMU findable by its command line.
  await Deno.copyFile((await guestArtifacts()).initrd, `${dir}/initrd.img`);
  return {
    vmDir: dir,
    kernelPath: vmlinux,
    initrdPath: `${dir}/initrd.img`,
    bootArgs: renderKernelCmdline({ vmm: "firecracker", firecrackerVersion: "1.16.1" }),
    rootDisk,
    vcpuCount: 2,
    memSizeMib: 1024,
  };
}

/** Pids whose command line mentions `marker`. */
function processesMentioning(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = (() => {
      try {
        return readProcFileIfExists(`/proc/${entry.name}/cmdline`) ?? "";
      } catch {
        return "";
      }
    })();
    if (cmdline.includes(marker)) pids.push(Number(entry.name));
  }
  return pids;
}

async function waitForSerial(dir: string, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pattern.test(await Deno.readTextFile(`${dir}/serial.log`))) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  const tail = (await Deno.readTextFile(`${dir}/serial.log`)).split("\n").slice(-10).join("\n");
  throw new Error(`The guest console did not show ${pattern} within ${timeoutMs} ms:\n${tail}`);
}

/** Starts the fake firecracker in QEMU mode for `dir`. */
function launchFake(dir: string, id: string): Promise<Firecracker> {
  return Firecracker.launch({ binary: FAKE_FIRECRACKER, vmDir: dir, id, env: QEMU_ENV, procs });
}

/** Launches the fake (QEMU mode) on a copy of the golden image and waits for the login prompt. */
async function bootRealGuest(dir: string, id: string): Promise<Firecracker> {
  const { rootfs } = await guestArtifacts();
  const disk = `${dir}/root.ext4`;
  const cp = await new Deno.Command("cp", { args: ["--sparse=always", rootfs, disk] }).output();
  assert(cp.success, "copy the golden image");
  const vmm = await launchFake(dir, id);
  await vmm.configure(await spec(dir, disk));
  await vmm.start();
  await waitForSerial(dir, /login:/, 240_000);
  return vmm;
}

gatedTest(
  "Firecracker boots a real Debian guest (fake in QEMU mode, cmdline as given) and stop() ends it with Ctrl+Alt+Del within the daemon's bound (root, qemu)",
  NEEDS,
  () =>
    withVmDir(async (dir) => {
      const vmm = await bootRealGuest(dir, "qemu-e2e");
      // The daemon's own bound: a systemd shutdown must fit it (under TCG here, too).
      const result = await vmm.stop({ exitWaitMs: 0, ...FIRECRACKER_STOP });
      assertEquals(
        result.endedBy,
        "ctrl-alt-del",
        "the keyboard reached the guest (no i8042.nopnp)",
      );
      assertEquals(result.exit, { code: 0, signal: null });
      assert((await Deno.readTextFile(`${dir}/serial.log`)).includes("reboot: Restarting system"));
      assertEquals(processesMentioning(`${dir}/initrd.img`), [], "QEMU is gone");
    }),
);

gatedTest(
  "fake firecracker (QEMU mode) exits 0 when the guest panics and panic=1 reboots it (root, qemu)",
  NEEDS,
  () =>
    withVmDir(async (dir) => {
      const blank = `${dir}/blank.img`;
      await Deno.writeFile(blank, new Uint8Array(4 * 1024 * 1024));
      const vmm = await launchFake(dir, "qemu-panic");
      await vmm.configure(await spec(dir, blank));
      await vmm.start();
      assert(await vmm.waitForExit(120_000), "the VMM ends with the guest's reboot");
      assertEquals([vmm.exitStatus?.code, vmm.exitStatus?.signal], [0, null]);
      assert((await Deno.readTextFile(`${dir}/serial.log`)).includes("cannot mount /dev/vda"));
    }),
);

gatedTest(
  "fake firecracker (QEMU mode) takes QEMU down with it when SIGKILLed (root, qemu)",
  NEEDS,
  () =>
    withVmDir(async (dir) => {
      const vmm = await launchFake(dir, "qemu-kill");
      const s = await spec(dir, `${dir}/none`);
      await Deno.writeFile(`${dir}/none`, new Uint8Array(4096));
      await vmm.configure(s);
      await vmm.start(); // returns once QEMU runs and its QMP socket answered
      assert(processesMentioning(`${dir}/initrd.img`).length > 0, "QEMU runs");
      assertEquals(await vmm.kill("SIGKILL"), true);
      assert(await vmm.waitForExit(10_000));
      const deadline = Date.now() + 10_000;
      while (processesMentioning(`${dir}/initrd.img`).length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assertEquals(processesMentioning(`${dir}/initrd.img`), [], "pdeathsig killed QEMU");
    }),
);

gatedTest(
  "fake firecracker (QEMU mode) snapshots a paused real guest through QEMU migration and a fresh process resumes it (root, qemu)",
  NEEDS,
  () =>
    withVmDir(async (dir) => {
      const first = await bootRealGuest(dir, "qemu-snap");
      assertEquals((await call(first.apiSocket, "PATCH", "/vm", { state: "Paused" })).status, 204);
      const created = await call(first.apiSocket, "PUT", "/snapshot/create", {
        snapshot_path: `${dir}/snap.state`,
        mem_file_path: `${dir}/snap.mem`,
      });
      assertEquals(created.status, 204, created.fault);
      assert((await Deno.stat(`${dir}/snap.mem`)).size > 1 << 20, "the guest's memory was written");
      await first.kill("SIGKILL");
      assert(await first.waitForExit(10_000));
      await first.cleanup();

      const second = await launchFake(dir, "qemu-snap");
      const loaded = await call(second.apiSocket, "PUT", "/snapshot/load", {
        snapshot_path: `${dir}/snap.state`,
        mem_backend: { backend_type: "File", backend_path: `${dir}/snap.mem` },
        resume_vm: true,
      });
      assertEquals(loaded.status, 204, loaded.fault);
      // The restored guest is the running system it was: it answers Ctrl+Alt+Del at once.
      const result = await second.stop({ exitWaitMs: 0, ctrlAltDelWaitMs: 60_000 });
      assertEquals(result.endedBy, "ctrl-alt-del");
      assert((await Deno.readTextFile(`${dir}/serial.log`)).includes("reboot: Restarting system"));
    }),
);
