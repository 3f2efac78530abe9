/**
 * QEMU state save and restore on a real guest: a counting init keeps counting after the
 * state is loaded into a fresh QEMU, with no second boot.
 */
import { launchQemu, QemuError } from "../../../../host/vmm/qemu/qemu.ts";
import { restoreQemuState, saveQemuState } from "../../../../host/vmm/qemu/snapshot.ts";
import { assert, assertEquals, assertRejects } from "../../../fixtures/assert.ts";
import { guestKernelRequirements } from "../../../fixtures/guest_artifacts.ts";
import { countingGuest, lastTick, untilTick } from "../../../fixtures/counting_guest.ts";
import { gatedTest, programs } from "../../../fixtures/requires.ts";
import { BangerError } from "../../../../host/errors.ts";

/** Writes timings to stderr (tests report numbers, never assert them). */
function note(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`    ${text}\n`));
}

gatedTest(
  "saveQemuState() and restoreQemuState(): a running guest continues in a fresh QEMU without booting again (QEMU)",
  [...guestKernelRequirements(), programs("qemu-system-x86_64", "mkfs.ext4", "busybox")],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bgt-qsnap-" });
    try {
      const spec = await countingGuest(dir);
      const first = await launchQemu(spec);
      let before: number;
      try {
        await untilTick(spec.serialLogPath, 0, 3);
        await assertRejects(
          () => saveQemuState(first, "relative/state"),
          QemuError,
          "use a plain absolute path",
        );
        // A state that cannot fit is refused before the guest is paused.
        const full = await assertRejects(
          () => saveQemuState(first, `${dir}/state`, { needBytes: 2 ** 60 }),
          BangerError,
          "Cannot write a VM state",
        );
        assertEquals(full.code, "failed_precondition");
        assertEquals(((await first.qmp("query-status")) as { running: boolean }).running, true);
        const saved = await saveQemuState(first, `${dir}/state`, { needBytes: 256 * 2 ** 20 });
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
        const after = await untilTick(spec.serialLogPath, offset, before + 2);
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
