/**
 * QEMU state save and restore on a real guest: a counting init keeps counting after the
 * state is loaded into a fresh QEMU, with no second boot.
 */
import { renderKernelCmdline } from "../../../../host/vmm/kernel_cmdline.ts";
import { createExt4 } from "../../../../host/disk/ext4.ts";
import { cpuKhz } from "../../../../host/vmm/kvm.ts";
import { readProcFile } from "../../../../host/os/procfs.ts";
import { launchQemu, QemuError, type QemuVmSpec } from "../../../../host/vmm/qemu/qemu.ts";
import { restoreQemuState, saveQemuState } from "../../../../host/vmm/qemu/snapshot.ts";
import { assert, assertEquals, assertRejects } from "../../../fixtures/assert.ts";
import { guestKernel, guestKernelRequirements } from "../../../fixtures/guest_artifacts.ts";
import { gatedTest, programs } from "../../../fixtures/requires.ts";

/** Writes timings to stderr (tests report numbers, never assert them). */
function note(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`    ${text}\n`));
}

const INIT = `#!/bin/busybox sh
i=0
while :; do i=$((i+1)); echo "tick $i"; /bin/busybox sleep 1; done
`;

/** Waits until the serial log past `from` shows `pattern`; returns that part of the log. */
async function serialUntil(path: string, from: number, pattern: RegExp): Promise<string> {
  for (let i = 0; i < 600; i++) {
    const text = new TextDecoder().decode((await Deno.readFile(path)).subarray(from));
    if (pattern.test(text)) return text;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = new TextDecoder().decode((await Deno.readFile(path)).subarray(from)).slice(-800);
  throw new Error(`the serial console never showed ${pattern}; it ends:\n${tail}`);
}

function lastTick(text: string): number {
  return Math.max(0, ...[...text.matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));
}

gatedTest(
  "saveQemuState() and restoreQemuState(): a running guest continues in a fresh QEMU without booting again (QEMU)",
  [...guestKernelRequirements(), programs("qemu-system-x86_64", "mkfs.ext4", "busybox")],
  async () => {
    const { vmlinux, initrd } = await guestKernel();
    const dir = await Deno.makeTempDir({ prefix: "bgt-qsnap-" });
    try {
      await Deno.mkdir(`${dir}/tree/sbin`, { recursive: true });
      await Deno.mkdir(`${dir}/tree/bin`);
      await Deno.copyFile("/usr/bin/busybox", `${dir}/tree/bin/busybox`);
      await Deno.chmod(`${dir}/tree/bin/busybox`, 0o755);
      await Deno.writeTextFile(`${dir}/tree/sbin/init`, INIT, { mode: 0o755 });
      await createExt4({ path: `${dir}/root.ext4`, sizeBytes: 16 << 20, fromDir: `${dir}/tree` });
      const khz = cpuKhz(readProcFile("/proc/cpuinfo")) ?? 0;
      const spec: QemuVmSpec = {
        accel: "tcg",
        vcpus: 1,
        memoryMib: 256,
        kernelPath: vmlinux,
        initrdPath: initrd,
        cmdline: renderKernelCmdline({ vmm: "qemu-microvm", tscKhz: khz }),
        rootDiskPath: `${dir}/root.ext4`,
        serialLogPath: `${dir}/serial.log`,
        monitorSocketPath: `${dir}/qemu.sock`,
        pidFilePath: `${dir}/qemu.pid`,
      };
      const first = await launchQemu(spec);
      let before: number;
      try {
        await serialUntil(spec.serialLogPath, 0, /tick 3\r?\n/);
        await assertRejects(
          () => saveQemuState(first, "relative/state"),
          QemuError,
          "use a plain absolute path",
        );
        const saved = await saveQemuState(first, `${dir}/state`);
        note(`saved ${(saved.ramBytes / 2 ** 20).toFixed(1)} MiB of RAM in ${saved.totalMs} ms`);
        assert(saved.ramBytes > 0, "RAM was streamed");
        assertEquals(((await first.qmp("query-status")) as { running: boolean }).running, false);
        before = lastTick(await Deno.readTextFile(spec.serialLogPath));
      } finally {
        await first.stop();
      }
      const offset = (await Deno.stat(spec.serialLogPath)).size;
      const started = performance.now();
      const second = await launchQemu(spec, { incoming: true });
      try {
        await restoreQemuState(second, `${dir}/state`);
        await second.qmp("cont");
        const after = await serialUntil(
          spec.serialLogPath,
          offset,
          new RegExp(`tick ${before + 2}\r?\n`),
        );
        note(
          `restored and ticking again ${
            ((performance.now() - started) / 1000).toFixed(2)
          } s after launch`,
        );
        // The same process continued: its count goes on, and nothing booted.
        const ticks = [...after.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
        assertEquals(
          ticks[0] >= before,
          true,
          `first tick after restore: ${ticks[0]}, before: ${before}`,
        );
        assertEquals(/Linux version|banger-initrd/.test(after), false, "no second boot");
      } finally {
        await second.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
