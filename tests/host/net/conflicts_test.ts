import { findNetworkConflict, freeCidr, parseRoutes } from "../../../host/net/conflicts.ts";
import { instanceFor } from "../../../host/instance.ts";
import { assertEquals, assertMatch } from "../../fixtures/assert.ts";

const HEADER = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n";
const mine = instanceFor("/root/.local/state/banger");
const theirs = instanceFor("/var/lib/banger");

Deno.test("parseRoutes() reads /proc/net/route's host-order hex", () => {
  const routes = parseRoutes(
    HEADER + "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
      "bg-br0\t000010AC\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
  );
  assertEquals(routes, [
    { iface: "eth0", network: { network: 0, prefixLength: 0 } },
    { iface: "bg-br0", network: { network: 0xac100000, prefixLength: 24 } },
  ]);
  assertEquals(freeCidr(routes), "172.16.1.0/24");
});

/** A fake /sys and /proc: `links` maps interface names to their alias and bridge ports. */
async function fakeHost(
  links: Record<string, { alias?: string; ports?: string[] }>,
  routes: string,
): Promise<{ sys: string; proc: string } & AsyncDisposable> {
  const root = await Deno.makeTempDir({ prefix: "bgc-" });
  for (const [name, l] of Object.entries(links)) {
    const dir = `${root}/sys/class/net/${name}`;
    await Deno.mkdir(`${dir}/brif`, { recursive: true });
    await Deno.writeTextFile(`${dir}/type`, "1\n");
    await Deno.writeTextFile(`${dir}/ifalias`, `${l.alias ?? ""}\n`);
    for (const p of l.ports ?? []) await Deno.writeTextFile(`${dir}/brif/${p}`, "");
  }
  await Deno.mkdir(`${root}/proc/net`, { recursive: true });
  await Deno.writeTextFile(`${root}/proc/net/route`, HEADER + routes);
  return {
    sys: `${root}/sys`,
    proc: `${root}/proc`,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

Deno.test("findNetworkConflict() names another live instance's bridge and overlapping routes", async () => {
  const route = "bg-br0\t000010AC\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
  const claim = { instance: mine, bridgeName: "bg-br0", cidr: "172.16.0.0/24" };
  {
    await using h = await fakeHost(
      { "bg-br0": { alias: theirs.bridgeAlias, ports: [`${theirs.tapPrefix}0`] } },
      route,
    );
    const conflict = findNetworkConflict(claim, h) ?? "";
    assertMatch(
      conflict,
      new RegExp(`belongs to banger instance ${theirs.id} \\(state dir /var/lib/banger\\)`),
    );
    assertMatch(conflict, /carries 1 interface/);
  }
  {
    // Its own bridge with its own taps, and a stale bridge of another instance: free.
    await using h = await fakeHost(
      { "bg-br0": { alias: mine.bridgeAlias, ports: [`${mine.tapPrefix}3`] } },
      route,
    );
    assertEquals(findNetworkConflict(claim, h), undefined);
    await using stale = await fakeHost({ "bg-br0": { alias: theirs.bridgeAlias } }, route);
    assertEquals(findNetworkConflict(claim, stale), undefined, "no ports: nobody uses it");
  }
  {
    // Another bridge (another instance's) routes the same CIDR.
    await using h = await fakeHost(
      { "bg-br9": { alias: theirs.bridgeAlias, ports: [`${theirs.tapPrefix}0`] } },
      route.replace("bg-br0", "bg-br9"),
    );
    assertMatch(
      findNetworkConflict(claim, h) ?? "",
      new RegExp(
        `172.16.0.0/24 is routed through "bg-br9" \\(the bridge of banger instance ${theirs.id}`,
      ),
    );
    assertEquals(
      findNetworkConflict({ ...claim, bridgeName: "bg-br1", cidr: "172.16.1.0/24" }, h),
      undefined,
      "a network of its own is free",
    );
    assertMatch(
      findNetworkConflict({ ...claim, cidr: "172.16.0.128/25" }, h) ?? "",
      /overlaps cidr 172.16.0.128\/25/,
    );
  }
});
