import { CID_BLOCK, instanceFor, parseBridgeAlias, tapIndex } from "../../host/instance.ts";
import { isTapName } from "../../host/net/tap.ts";
import { assert, assertEquals, assertNotEquals } from "../fixtures/assert.ts";

Deno.test("instanceFor() gives each state dir its own tap prefix, nft table and CID block, stably", () => {
  const dirs = ["/var/lib/banger", "/root/.local/state/banger", "/home/a/.local/state/banger"];
  const all = dirs.map(instanceFor);
  assertEquals(all.map((i) => i.id), dirs.map((d) => instanceFor(d).id), "stable");
  assertEquals(new Set(all.map((i) => i.id)).size, 3);
  for (const i of all) {
    assert(/^[a-z0-9]{4}$/.test(i.id), i.id);
    assertEquals(i.nftTable, `banger_${i.id}`);
    assert(isTapName(`${i.tapPrefix}9999`), `${i.tapPrefix}9999 fits 15 bytes`);
    assert(i.firstCid >= CID_BLOCK && i.firstCid + CID_BLOCK - 1 < 0xffffffff, `${i.firstCid}`);
  }
  const blocks = all.map((i) => i.firstCid / CID_BLOCK);
  assertEquals(new Set(blocks).size, 3, "disjoint CID blocks");
});

Deno.test("tapIndex() accepts only the instance's own taps", () => {
  const mine = instanceFor("/var/lib/banger");
  const theirs = instanceFor("/root/.local/state/banger");
  assertEquals(tapIndex(mine, `${mine.tapPrefix}12`), 12);
  assertEquals(tapIndex(mine, `${theirs.tapPrefix}12`), undefined);
  for (
    const bad of ["bg-tap0", `${mine.tapPrefix}012`, `${mine.tapPrefix}10000`, `${mine.tapPrefix}`]
  ) {
    assertEquals(tapIndex(mine, bad), undefined, bad);
  }
});

Deno.test("parseBridgeAlias() reads back the alias an instance gives its bridge", () => {
  const i = instanceFor("/var/lib/banger");
  assertEquals(parseBridgeAlias(`${i.bridgeAlias}\n`), { id: i.id, stateDir: "/var/lib/banger" });
  assertEquals(parseBridgeAlias("docker bridge"), undefined);
  assertNotEquals(parseBridgeAlias(instanceFor("/x").bridgeAlias)?.id, i.id);
});
