import { TapPool } from "../../../daemon/network/tap_pool.ts";
import { Logger } from "../../../daemon/logger.ts";
import type { PrivilegedOps } from "../../../host/privileged/privileged_ops.ts";
import { assertEquals } from "../../fixtures/assert.ts";

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
  const pool = new TapPool(ops, "bg-br0", 2, new Logger({ write: () => {} }, "error"));
  const vmTap = await pool.acquire(); // starts a warm-up of 2 in the background
  await pool.release(vmTap); // lands while the warm-up creates its taps
  await pool.warm();
  assertEquals(pool.idle.length <= 2, true, `idle: ${pool.idle.join(", ")}`);
  assertEquals(taps.size, pool.idle.length, "no tap exists that the pool does not hold");

  taps.add("bg-tap40");
  taps.add("bg-tap41");
  const fresh = new TapPool(ops, "bg-br0", 2, new Logger({ write: () => {} }, "error"));
  const warming = fresh.warm();
  await fresh.adopt([]);
  await warming;
  assertEquals(fresh.idle.length, 2);
});
