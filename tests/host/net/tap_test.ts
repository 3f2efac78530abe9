import { assert, assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { listNetns, Netns, NETNS_PREFIX } from "../../fixtures/netns.ts";
import { gatedTest, path, programs, root } from "../../fixtures/requires.ts";
import {
  encodeIfreq,
  IFF_NO_PI,
  IFF_TAP,
  IFF_VNET_HDR,
  IFREQ_SIZE,
  isTapName,
  parseTapList,
  TapError,
} from "../../../host/net/tap.ts";

const NETNS = [root(), programs("ip"), path("/dev/net/tun")];
const created: string[] = [];

async function netns(): Promise<Netns> {
  const ns = await Netns.create();
  created.push(ns.name);
  return ns;
}

Deno.test("encodeIfreq() lays out struct ifreq: name @0, flags @16", () => {
  const req = encodeIfreq("bg-tap0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
  const expected = new Uint8Array(IFREQ_SIZE);
  expected.set(new TextEncoder().encode("bg-tap0"), 0);
  expected.set([0x02, 0x50], 16); // 0x5002 little-endian
  assertEquals(req, expected);
});

Deno.test("encodeIfreq() takes a 15-byte name and refuses 16", () => {
  const req = encodeIfreq("a".repeat(15), IFF_TAP);
  assertEquals(req[14], 0x61);
  assertEquals(req[15], 0, "NUL terminator inside IFNAMSIZ");
  assertThrows(() => encodeIfreq("a".repeat(16), IFF_TAP), TapError, "1 to 15 bytes");
  assertThrows(() => encodeIfreq("", IFF_TAP), TapError);
  assertThrows(() => encodeIfreq("a b", IFF_TAP), TapError);
  assertThrows(() => encodeIfreq("a/b", IFF_TAP), TapError);
});

Deno.test("isTapName() accepts only bg-tap names of at most 15 bytes", () => {
  assert(isTapName("bg-tap0"));
  assert(isTapName("bg-tap-abcdefgh")); // 15 bytes
  for (const bad of ["bg-tap", "bg-tap-abcdefghi", "eth0", "bg-br0", "bg-TAP0", "bg-tap0\n"]) {
    assert(!isTapName(bad), bad);
  }
});

Deno.test("parseTapList() keeps only banger's tun devices", () => {
  const json = JSON.stringify([
    { ifname: "lo", flags: ["LOOPBACK", "UP"] },
    {
      ifname: "bg-tap1",
      flags: ["BROADCAST", "UP"],
      master: "bg-br0",
      linkinfo: { info_kind: "tun" },
    },
    { ifname: "bg-tap2", flags: [], linkinfo: { info_kind: "tun" } },
    { ifname: "bg-tapx", linkinfo: { info_kind: "dummy" } },
    { ifname: "tap0", linkinfo: { info_kind: "tun" } },
  ]);
  assertEquals(parseTapList(json), [
    { name: "bg-tap1", bridge: "bg-br0", up: true },
    { name: "bg-tap2", bridge: undefined, up: false },
  ]);
});

gatedTest(
  "createTap() makes a persistent vnet_hdr tap on the bridge; deleteTap() removes it (root, netns)",
  NETNS,
  async () => {
    await using ns = await netns();
    const kernel = await ns.deno<
      { link: unknown; taps: unknown; again: string; owner: unknown; del: boolean; gone: boolean }
    >(`
    const { ensureBridge } = await import(HOST + "net/bridge.ts");
    const tap = await import(HOST + "net/tap.ts");
    await ensureBridge({ name: "bg-brt", address: "172.30.0.1/24" });
    await tap.createTap("bg-tap0", { bridge: "bg-brt", owner: 1234 });
    const run = async (args) => new TextDecoder().decode((await new Deno.Command("ip", { args, stdout: "piped" }).output()).stdout);
    const link = JSON.parse(await run(["-j", "-d", "link", "show", "dev", "bg-tap0"]))[0];
    const taps = await tap.listTaps();
    // An existing tap is never taken over (it may be another instance's): refused, unchanged.
    const again = await tap.createTap("bg-tap0", { bridge: "bg-brt" }).then(
      () => "created",
      (err) => err.code + ": " + err.message,
    );
    const after = JSON.parse(await run(["-j", "-d", "link", "show", "dev", "bg-tap0"]))[0];
    const del = await tap.deleteTap("bg-tap0");
    const gone = !(await tap.deleteTap("bg-tap0"));
    return { link: { kind: link.linkinfo.info_kind, data: link.linkinfo.info_data, master: link.master, up: link.flags.includes("UP") }, taps, again, owner: after.linkinfo.info_data.user, del, gone };
  `);
    assertEquals(kernel.link, {
      kind: "tun",
      data: {
        type: "tap",
        pi: false,
        vnet_hdr: true,
        multi_queue: false,
        persist: true,
        user: 1234,
      },
      master: "bg-brt",
      up: true,
    });
    assertEquals(kernel.taps, [{ name: "bg-tap0", bridge: "bg-brt", up: true }]);
    assertEquals(
      kernel.again,
      'conflict: Cannot create tap "bg-tap0": an interface of that name exists',
    );
    assertEquals(kernel.owner, 1234, "still its first owner's");
    assertEquals(kernel.del, true);
    assertEquals(kernel.gone, true, "deleting a missing tap reports false");
  },
);

gatedTest(
  "createTap() refuses a foreign name and undoes itself when the bridge is missing (root, netns)",
  NETNS,
  async () => {
    await using ns = await netns();
    const out = await ns.deno<{ foreign: string; noBridge: string; left: unknown }>(`
    const tap = await import(HOST + "net/tap.ts");
    const msg = async (p) => { try { await p; return "no error"; } catch (e) { return e.code + ": " + e.message; } };
    const foreign = await msg(tap.createTap("eth0", { bridge: "bg-brt" }));
    const noBridge = await msg(tap.createTap("bg-tap1", { bridge: "bg-missing" }));
    return { foreign, noBridge, left: await tap.listTaps() };
  `);
    assert(out.foreign.startsWith('invalid_argument: Cannot use tap name "eth0"'), out.foreign);
    assert(
      out.noBridge.startsWith(
        'failed_precondition: Cannot attach tap "bg-tap1" to bridge "bg-missing"',
      ),
      out.noBridge,
    );
    assertEquals(out.left, [], "the half-made tap was deleted");
  },
);

gatedTest(
  "deleteTap() of a tap held open by a VMM fails busy, then succeeds once released (root, netns)",
  NETNS,
  async () => {
    await using ns = await netns();
    const out = await ns.deno<{ busy: string; deleted: boolean }>(`
    const tap = await import(HOST + "net/tap.ts");
    const { Fd, O_RDWR } = await import(HOST + "os/libc.ts");
    await (await import(HOST + "net/bridge.ts")).ensureBridge({ name: "bg-brt", address: "172.30.0.1/24" });
    await tap.createTap("bg-tap2", { bridge: "bg-brt" });
    const vmm = Fd.open("/dev/net/tun", O_RDWR); // what Firecracker does
    vmm.ioctlPtr(tap.TUNSETIFF, tap.encodeIfreq("bg-tap2", tap.IFF_TAP | tap.IFF_NO_PI | tap.IFF_VNET_HDR), "attach");
    let busy = "";
    try { await tap.deleteTap("bg-tap2"); } catch (e) { busy = e.message; }
    vmm.close();
    return { busy, deleted: await tap.deleteTap("bg-tap2") };
  `);
    assert(out.busy.includes("(EBUSY)"), out.busy);
    assertEquals(out.deleted, true);
  },
);

gatedTest(
  "tap tests leave no network namespace behind (root)",
  [root(), programs("ip")],
  async () => {
    const left = (await listNetns()).filter((n) =>
      n.startsWith(NETNS_PREFIX) && created.includes(n)
    );
    assertEquals(left, []);
  },
);
