/**
 * QEMU state save/restore on a real guest (a Debian kernel and a counting init, under
 * TCG here): cold boot to the guest's first tick, against restoring a saved state to its
 * next tick, in the same run — the primitive `vm suspend|resume` and warm runs build on.
 *
 * @module
 */

import { launchQemu } from "../host/vmm/qemu/qemu.ts";
import { restoreQemuState, saveQemuState } from "../host/vmm/qemu/snapshot.ts";
import { countingGuest, lastTick, untilTick } from "../tests/fixtures/counting_guest.ts";
import { heading, median, ms, row } from "./_stats.ts";

const RUNS = 3;

/** Runs the benchmark and prints its figures. */
export async function main(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "bgb-snap-" });
  try {
    const spec = await countingGuest(dir, 512);
    const cold: number[] = [];
    const save: number[] = [];
    const restore: number[] = [];
    let stateBytes = 0;
    for (let i = 0; i < RUNS; i++) {
      await Deno.writeFile(spec.serialLogPath, new Uint8Array());
      const t0 = performance.now();
      const vm = await launchQemu(spec);
      try {
        await untilTick(spec.serialLogPath, 0, 1);
        cold.push(performance.now() - t0);
        const t1 = performance.now();
        await saveQemuState(vm, `${dir}/state`);
        save.push(performance.now() - t1);
        stateBytes = (await Deno.stat(`${dir}/state`)).size;
      } finally {
        await vm.stop();
      }
      const before = lastTick(await Deno.readTextFile(spec.serialLogPath));
      const offset = (await Deno.stat(spec.serialLogPath)).size;
      const t2 = performance.now();
      const back = await launchQemu(spec, { incoming: true });
      try {
        await restoreQemuState(back, `${dir}/state`);
        await back.qmp("cont");
        // The next tick, at most a 1 s sleep away: the figure includes up to that second.
        await untilTick(spec.serialLogPath, offset, before + 1);
        restore.push(performance.now() - t2);
      } finally {
        await back.stop();
      }
    }
    heading("snapshot: QEMU save/restore of a 512 MiB guest (counting init, TCG)");
    row("cold boot to first tick, median", ms(median(cold)));
    row("save (stop + migrate to file), median", ms(median(save)));
    row("state file", `${(stateBytes / 2 ** 20).toFixed(1)} MiB`);
    row("restore to next tick (incl. ≤ 1 s sleep), median", ms(median(restore)));
    row("ratio restore / cold", `${(median(restore) / median(cold)).toFixed(2)}×`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
