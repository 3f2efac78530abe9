import { TapPool } from "../../../daemon/network/tap_pool.ts";
import { Logger } from "../../../daemon/logger.ts";
import type { PrivilegedOps } from "../../../host/privileged/privileged_ops.ts";
import { assertEquals } from "../../fixtures/assert.ts";
import { instanceFor, tapIndex } from "../../../host/instance.ts";

const mine = instanceFor("/home/dev/.local/state/banger");
const theirs = instanceFor("/var/lib/banger");
const quiet = new Logger({ write: () => {} }, "error");

/** Taps in memory; creating one takes a moment, as it does on a host. */
function fakeOps(): { ops: PrivilegedOps; taps: Set<string> } {
  const taps = new Set<string>();
  const ops = {
    async createTap({ name }: { name: string }) {
      await new Promise((r) => setTimeout(r, 20));
      taps.add(name);
    },
    deleteTap({ name }: { name: string }) {
      return Promise.resolve(taps.delete(name));
    },
    listTaps() {
      return Promise.resolve([...taps].map((name) => ({ name })));
    },
  } as unknown as PrivilegedOps;
  return { ops, taps };
}

Deno.test("TapPool never grows past its size when a release or an adopt lands during a warm-up", async () => {
  const { ops, taps } = fakeOps();
  const pool = new TapPool(ops, mine, "bg-br0", 2, quiet);
  const vmTap = await pool.acquire(); // starts a warm-up of 2 in the background
  await pool.release(vmTap); // lands while the warm-up creates its taps
  await pool.warm();
  assertEquals(pool.idle.length <= 2, true, `idle: ${pool.idle.join(", ")}`);
  assertEquals(taps.size, pool.idle.length, "no tap exists that the pool does not hold");

  taps.add(`${mine.tapPrefix}40`);
  taps.add(`${mine.tapPrefix}41`);
  const fresh = new TapPool(ops, mine, "bg-br0", 2, quiet);
  const warming = fresh.warm();
  await fresh.adopt([]);
  await warming;
  assertEquals(fresh.idle.length, 2);
});

Deno.test("TapPool adopts, reuses and deletes only its own instance's taps", async () => {
  const { ops, taps } = fakeOps();
  const foreign = [`${theirs.tapPrefix}0`, `${theirs.tapPrefix}1`, "bg-tap0"];
  for (const t of foreign) taps.add(t);
  for (const i of [0, 1, 2]) taps.add(`${mine.tapPrefix}${i}`);
  const pool = new TapPool(ops, mine, "bg-br0", 1, quiet);
  await pool.adopt([`${mine.tapPrefix}1`]);
  assertEquals([...pool.idle], [`${mine.tapPrefix}0`]);
  const created = await pool.acquire();
  assertEquals(created, `${mine.tapPrefix}0`);
  const next = await pool.acquire();
  assertEquals((tapIndex(mine, next) ?? 0) >= 3, true, `${next}: after the highest of its own`);
  await pool.drain();
  for (const t of foreign) assertEquals(taps.has(t), true, `${t} survives`);
  assertEquals(taps.has(`${mine.tapPrefix}2`), false, "its own extra tap was deleted");
});
