import { assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { Netns } from "../../fixtures/netns.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { GuardError, renderGuardScript } from "../../../host/net/guard.ts";

const T = "banger_t3st";
const guard = { vmId: "vm1", tap: "bg-tapt3st-1", guestIp: "172.30.0.2", mac: "06:00:ac:1e:00:02" };

Deno.test("renderGuardScript() drops every frame but the VM's own MAC, ARP and IPv4 source", () => {
  const script = renderGuardScript({ delete: [9], add: [guard] }, T);
  const on = 'add rule bridge banger_t3st prerouting iifname "bg-tapt3st-1"';
  const tag = 'comment "banger-vm:vm1"';
  assertEquals(script.split("\n").slice(5), [
    "delete rule bridge banger_t3st prerouting handle 9",
    `${on} ether saddr != 06:00:ac:1e:00:02 drop ${tag}`,
    `${on} ether type arp arp saddr ip != 172.30.0.2 drop ${tag}`,
    `${on} ether type arp arp saddr ether != 06:00:ac:1e:00:02 drop ${tag}`,
    `${on} ether type ip ip saddr != 172.30.0.2 drop ${tag}`,
    `${on} ether type != { ip, arp } drop ${tag}`,
    "",
  ]);
  for (
    const bad of [
      { tap: 'bg-tap0" accept' },
      { mac: "06:00:AC:1E:00:02 accept" },
      { guestIp: "172.30.0.0/24" },
      { vmId: "vm1\nflush ruleset" },
    ]
  ) {
    assertThrows(
      () => renderGuardScript({ delete: [], add: [{ ...guard, ...bad }] }, T),
      GuardError,
    );
  }
  assertThrows(
    () => renderGuardScript({ delete: [], add: [] }, "banger; flush ruleset"),
    GuardError,
  );
});

gatedTest(
  "a guarded tap passes its guest's own traffic and drops a spoofed address, a spoofed MAC and IPv6 (root, 2 netns)",
  [root(), programs("ip", "nft", "ping")],
  async () => {
    await using host = await Netns.create();
    await using guest = await Netns.create();
    const h = (...args: string[]) => host.exec(["ip", ...args]);
    const g = (...args: string[]) => guest.exec(["ip", ...args]);
    await h("link", "add", "bg-brt", "type", "bridge");
    await h("addr", "add", "172.30.0.1/24", "dev", "bg-brt");
    await h("link", "set", "bg-brt", "up");
    // A veth stands in for the VM's tap: the guest end lives in its own namespace.
    await h("link", "add", guard.tap, "type", "veth", "peer", "name", "eth0", "netns", guest.name);
    await h("link", "set", guard.tap, "master", "bg-brt", "up");
    await g("link", "set", "eth0", "address", guard.mac);
    await g("addr", "add", "172.30.0.2/24", "dev", "eth0");
    await g("link", "set", "eth0", "up");
    await host.deno(
      `await (await import(HOST + "net/guard.ts")).addGuard(${JSON.stringify(guard)}, "${T}");`,
    );
    const ping = async (args: string[] = []) =>
      (await guest.run(["ping", "-c", "1", "-W", "2", ...args, "172.30.0.1"])).code === 0;
    const results: Record<string, boolean> = { own: await ping() };
    await g("addr", "add", "172.30.0.9/24", "dev", "eth0");
    results.spoofedIp = await ping(["-I", "172.30.0.9"]);
    await g("addr", "del", "172.30.0.9/24", "dev", "eth0");
    await g("neigh", "flush", "dev", "eth0");
    await h("neigh", "flush", "dev", "bg-brt");
    await g("link", "set", "eth0", "address", "06:00:ac:1e:00:09");
    results.spoofedMac = await ping();
    await g("link", "set", "eth0", "address", guard.mac);
    await g("neigh", "flush", "dev", "eth0");
    await h("neigh", "flush", "dev", "bg-brt");
    results.ownAgain = await ping();
    const addrs = JSON.parse(await h("-j", "-6", "addr", "show", "dev", "bg-brt")) as {
      addr_info?: { scope: string; local: string }[];
    }[];
    const linkLocal = addrs[0]?.addr_info?.find((a) => a.scope === "link")?.local;
    const ping6 = async () =>
      linkLocal === undefined
        ? "no IPv6 here"
        : (await guest.run(["ping", "-6", "-c", "1", "-W", "2", `${linkLocal}%eth0`])).code === 0;
    const v6: Record<string, boolean | string> = { guarded: await ping6() };
    const removed = await host.deno<boolean[]>(
      `const g = await import(HOST + "net/guard.ts"); return [await g.removeGuard("vm1", "${T}"), await g.removeGuard("vm1", "${T}")];`,
    );
    results.afterRemoval = await ping();
    // The guest's link-local address was renewed with its MAC: let DAD finish first.
    for (let i = 0; i < 5 && v6.removed !== true; i++) v6.removed = await ping6();
    assertEquals(results, {
      own: true,
      spoofedIp: false,
      spoofedMac: false,
      ownAgain: true,
      afterRemoval: true,
    });
    if (v6.removed !== "no IPv6 here") {
      assertEquals(v6, { guarded: false, removed: true }, "IPv6 is dropped only while guarded");
    }
    assertEquals(removed, [true, false]);
  },
);
