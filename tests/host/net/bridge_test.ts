import { assert, assertEquals } from "../../fixtures/assert.ts";
import { listNetns, Netns } from "../../fixtures/netns.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { isBridgeName, parseInterfaceAddress } from "../../../host/net/bridge.ts";

const NETNS = [root(), programs("ip")];
const created: string[] = [];

Deno.test("isBridgeName() accepts bg- names up to 15 bytes, never a tap name", () => {
  assert(isBridgeName("bg-br0"));
  assert(isBridgeName("bg-abcdefghijkl")); // 15 bytes
  for (const bad of ["bg-abcdefghijklm", "br-fc", "docker0", "bg-tap0", "bg-", "bg-Br0", 'bg-"x']) {
    assert(!isBridgeName(bad), bad);
  }
});

Deno.test("parseInterfaceAddress() keeps host bits and checks the prefix", () => {
  assertEquals(parseInterfaceAddress("172.16.0.1/24"), { address: "172.16.0.1", prefixLength: 24 });
  for (
    const bad of [
      "172.16.0.1",
      "172.16.0.1/0",
      "172.16.0.1/33",
      "300.1.1.1/24",
      "a/24",
      "1.2.3.4/24\n",
    ]
  ) {
    assertEquals(parseInterfaceAddress(bad), undefined, bad);
  }
});

gatedTest(
  "ensureBridge() creates, addresses and brings up the bridge, idempotently (root, netns)",
  NETNS,
  async () => {
    await using ns = await Netns.create();
    created.push(ns.name);
    const out = await ns.deno<{ first: unknown; second: unknown; deleted: boolean[] }>(`
    const b = await import(HOST + "net/bridge.ts");
    const show = async () => {
      const out = new TextDecoder().decode((await new Deno.Command("ip", { args: ["-j", "-d", "addr", "show", "dev", "bg-brt"], stdout: "piped" }).output()).stdout);
      const l = JSON.parse(out)[0];
      return { kind: l.linkinfo.info_kind, up: l.flags.includes("UP"), addrs: l.addr_info.filter((a) => a.family === "inet").map((a) => a.local + "/" + a.prefixlen) };
    };
    await b.ensureBridge({ name: "bg-brt", address: "172.30.0.1/24" });
    const first = await show();
    await Promise.all([b.ensureBridge({ name: "bg-brt", address: "172.30.0.1/24" }), b.ensureBridge({ name: "bg-brt", address: "172.30.0.1/24" })]);
    const second = await show();
    return { first, second, deleted: [await b.deleteBridge("bg-brt"), await b.deleteBridge("bg-brt")] };
  `);
    assertEquals(out.first, { kind: "bridge", up: true, addrs: ["172.30.0.1/24"] });
    assertEquals(out.second, out.first);
    assertEquals(out.deleted, [true, false]);
  },
);

gatedTest(
  "ensureBridge() refuses an existing interface that is not a bridge (root, netns)",
  NETNS,
  async () => {
    await using ns = await Netns.create();
    created.push(ns.name);
    await ns.exec(["ip", "link", "add", "bg-brt", "type", "veth", "peer", "name", "bgt-peer"]);
    const err = await ns.deno<string>(`
    const b = await import(HOST + "net/bridge.ts");
    try { await b.ensureBridge({ name: "bg-brt", address: "172.30.0.1/24" }); return "no error"; }
    catch (e) { return e.code + ": " + e.message; }
  `);
    assertEquals(
      err,
      'conflict: Cannot use "bg-brt" as banger\'s bridge: it exists as a veth interface',
    );
    assert(
      (await ns.exec(["ip", "-j", "-d", "link", "show", "bg-brt"])).includes('"veth"'),
      "left alone",
    );
  },
);

gatedTest(
  "bridge tests leave no network namespace behind (root)",
  [root(), programs("ip")],
  async () => {
    assertEquals((await listNetns()).filter((n) => created.includes(n)), []);
  },
);
