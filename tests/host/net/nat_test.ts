import { assert, assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { listNetns, Netns } from "../../fixtures/netns.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import {
  type NatEntry,
  NftError,
  parseNatRuleset,
  renderNatScript,
} from "../../../host/net/nat.ts";

const NETNS = [root(), programs("ip", "nft")];
const created: string[] = [];
const vm = { vmId: "vm1", guestIp: "172.30.0.2", bridge: "bg-brt" };
const T = "banger_t3st";

Deno.test("renderNatScript() renders the table, deletes by handle and tags every rule", () => {
  assertEquals(
    renderNatScript({
      delete: [{ chain: "postrouting", handle: 4 }, { chain: "forward", handle: 7 }],
      add: [vm],
    }, T),
    [
      "table ip banger_t3st {",
      "\tchain postrouting {",
      "\t\ttype nat hook postrouting priority srcnat; policy accept;",
      "\t}",
      "\tchain forward {",
      "\t\ttype filter hook forward priority filter; policy accept;",
      "\t}",
      "}",
      "delete rule ip banger_t3st postrouting handle 4",
      "delete rule ip banger_t3st forward handle 7",
      'add rule ip banger_t3st postrouting ip saddr 172.30.0.2 oifname != "bg-brt" masquerade comment "banger-vm:vm1"',
      'add rule ip banger_t3st forward iifname "bg-brt" ip saddr 172.30.0.2 accept comment "banger-vm:vm1"',
      'add rule ip banger_t3st forward oifname "bg-brt" ip daddr 172.30.0.2 ct state established,related accept comment "banger-vm:vm1"',
      "",
    ].join("\n"),
  );
});

Deno.test("renderNatScript() rejects injected text in ids, addresses and names", async (t) => {
  const cases: [string, Partial<typeof vm>][] = [
    ["newline in the VM id", { vmId: 'vm1"\nflush ruleset' }],
    ["quote in the VM id", { vmId: 'vm1" accept comment "x' }],
    ["a CIDR instead of an address", { guestIp: "172.30.0.0/24" }],
    ["text after the address", { guestIp: "172.30.0.2 accept" }],
    ["quote in the bridge", { bridge: 'bg-br"0' }],
    ["a foreign bridge", { bridge: "docker0" }],
  ];
  for (const [name, bad] of cases) {
    await t.step(name, () => {
      const err = assertThrows(
        () => renderNatScript({ delete: [], add: [{ ...vm, ...bad }] }, T),
        NftError,
      );
      assertEquals(err.code, "invalid_argument");
    });
  }
  assertThrows(
    () => renderNatScript({ delete: [{ chain: "forward", handle: 0 }], add: [] }, T),
    NftError,
  );
});

Deno.test("parseNatRuleset() groups tagged rules by VM and ignores untagged ones", () => {
  const json = JSON.stringify({
    nftables: [
      { metainfo: { version: "1.0.6" } },
      { table: { family: "ip", name: "banger", handle: 1 } },
      {
        rule: {
          family: "ip",
          table: "banger",
          chain: "postrouting",
          handle: 4,
          comment: "banger-vm:vm1",
          expr: [{
            match: {
              op: "==",
              left: { payload: { protocol: "ip", field: "saddr" } },
              right: "172.30.0.2",
            },
          }],
        },
      },
      {
        rule: {
          family: "ip",
          table: "banger",
          chain: "forward",
          handle: 5,
          comment: "banger-vm:vm1",
        },
      },
      {
        rule: {
          family: "ip",
          table: "banger",
          chain: "forward",
          handle: 9,
          comment: "someone else",
        },
      },
      { rule: { family: "ip", table: "banger", chain: "forward", handle: 6 } },
    ],
  });
  assertEquals(parseNatRuleset(json), [{
    vmId: "vm1",
    guestIp: "172.30.0.2",
    rules: [{ chain: "postrouting", handle: 4 }, { chain: "forward", handle: 5 }],
  }]);
});

interface Ruleset {
  rules: { chain: string; comment?: string; expr: unknown[] }[];
  list: NatEntry[];
  forward: string;
  other: string;
}

gatedTest(
  "addNat()/removeNat() install exactly the VM's rules in the instance's table, leaving other instances' tables alone (root, netns)",
  NETNS,
  async () => {
    await using ns = await Netns.create();
    created.push(ns.name);
    // A table banger does not own and another instance's table, which must come out untouched.
    await ns.exec(
      ["nft", "-f", "-"],
      {
        stdin:
          "table ip other {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tcounter\n\t}\n}\n",
      },
    );
    await ns.exec(["nft", "-f", "-"], {
      stdin: renderNatScript({ delete: [], add: [{ ...vm, vmId: "theirs" }] }, "banger_zzzz"),
    });
    const theirsBefore = await ns.exec(["nft", "list", "table", "ip", "banger_zzzz"]);
    const otherBefore = await ns.exec(["nft", "list", "table", "ip", "other"]);
    const snapshot = `
    const nft = async (...args) => new TextDecoder().decode((await new Deno.Command("nft", { args, stdout: "piped" }).output()).stdout);
    const snap = async () => ({
      rules: JSON.parse(await nft("-j", "list", "table", "ip", "banger_t3st")).nftables.filter((i) => i.rule).map((i) => ({ chain: i.rule.chain, comment: i.rule.comment, expr: i.rule.expr })),
      list: await nat.listNat("banger_t3st"),
      forward: Deno.readTextFileSync("/proc/sys/net/ipv4/ip_forward").trim(),
      other: await nft("list", "table", "ip", "other"),
    });`;
    const out = await ns.deno<
      {
        once: Ruleset;
        twice: Ruleset;
        two: Ruleset;
        removed: boolean[];
        after: Ruleset;
        missing: boolean;
      }
    >(`
    const nat = await import(HOST + "net/nat.ts");
    ${snapshot}
    await nat.addNat({ vmId: "vm1", guestIp: "172.30.0.2", bridge: "bg-brt" }, "banger_t3st");
    const once = await snap();
    await nat.addNat({ vmId: "vm1", guestIp: "172.30.0.2", bridge: "bg-brt" }, "banger_t3st");
    const twice = await snap();
    await nat.addNat({ vmId: "vm2", guestIp: "172.30.0.3", bridge: "bg-brt" }, "banger_t3st");
    const two = await snap();
    const removed = [await nat.removeNat("vm1", "banger_t3st"), await nat.removeNat("vm1", "banger_t3st")];
    const after = await snap();
    const missing = (await nat.deleteNatTable("banger_t3st")) === true && (await nat.deleteNatTable("banger_t3st")) === false;
    return { once, twice, two, removed, after, missing };
  `);
    const tag = "banger-vm:vm1";
    assertEquals(out.once.forward, "1", "ip_forward enabled in the namespace");
    assertEquals(out.once.rules.map((r) => [r.chain, r.comment]), [
      ["postrouting", tag],
      ["forward", tag],
      ["forward", tag],
    ]);
    assertEquals(out.once.rules[0].expr, [
      {
        match: {
          op: "==",
          left: { payload: { protocol: "ip", field: "saddr" } },
          right: "172.30.0.2",
        },
      },
      { match: { op: "!=", left: { meta: { key: "oifname" } }, right: "bg-brt" } },
      { masquerade: null },
    ]);
    assertEquals(out.once.rules[2].expr, [
      { match: { op: "==", left: { meta: { key: "oifname" } }, right: "bg-brt" } },
      {
        match: {
          op: "==",
          left: { payload: { protocol: "ip", field: "daddr" } },
          right: "172.30.0.2",
        },
      },
      { match: { op: "in", left: { ct: { key: "state" } }, right: ["established", "related"] } },
      { accept: null },
    ]);
    assertEquals(out.twice.rules, out.once.rules, "adding again replaces, never duplicates");
    assertEquals(out.two.list.map((e) => e.vmId), ["vm1", "vm2"]);
    assertEquals(out.removed, [true, false]);
    assertEquals(out.after.rules.map((r) => r.comment), Array(3).fill("banger-vm:vm2"));
    assertEquals(out.after.list.map((e) => [e.vmId, e.guestIp, e.rules.length]), [[
      "vm2",
      "172.30.0.3",
      3,
    ]]);
    assert(out.missing, "deleteNatTable() deletes once, then reports absence");
    assertEquals(out.after.other, otherBefore, "table ip other untouched");
    assertEquals(await ns.exec(["nft", "list", "table", "ip", "other"]), otherBefore);
    assertEquals(
      await ns.exec(["nft", "list", "table", "ip", "banger_zzzz"]),
      theirsBefore,
      "another instance's table untouched",
    );
  },
);

/** Reads lines from a stream until one matches `re`; returns that line. */
async function waitForLine(
  reader: ReadableStreamDefaultReader<string>,
  re: RegExp,
): Promise<string> {
  let buffered = "";
  for (;;) {
    const lines = buffered.split("\n");
    const hit = lines.find((l) => re.test(l));
    if (hit !== undefined) return hit;
    const chunk = await reader.read();
    if (chunk.done) throw new Error(`stream ended before ${re}: ${buffered}`);
    buffered += chunk.value;
  }
}

gatedTest(
  "addNat() masquerades a guest's connection to the outside as the host's address (root, 3 netns, socat)",
  [...NETNS, programs("socat")],
  async () => {
    await using host = await Netns.create();
    await using guest = await Netns.create();
    await using outside = await Netns.create();
    created.push(host.name, guest.name, outside.name);
    const h = (...args: string[]) => host.exec(["ip", ...args]);
    await h("link", "add", "bg-brt", "type", "bridge");
    await h("addr", "add", "172.30.0.1/24", "dev", "bg-brt");
    await h("link", "set", "bg-brt", "up");
    // A veth stands in for the VM's tap: the guest end lives in its own namespace.
    await h("link", "add", "bg-tapg", "type", "veth", "peer", "name", "eth0", "netns", guest.name);
    await h("link", "set", "bg-tapg", "master", "bg-brt", "up");
    await guest.exec(["ip", "addr", "add", "172.30.0.2/24", "dev", "eth0"]);
    await guest.exec(["ip", "link", "set", "eth0", "up"]);
    await guest.exec(["ip", "route", "add", "default", "via", "172.30.0.1"]);
    await h("link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", outside.name);
    await h("addr", "add", "198.51.100.1/24", "dev", "up0");
    await h("link", "set", "up0", "up");
    await outside.exec(["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"]);
    await outside.exec(["ip", "link", "set", "eth0", "up"]); // no route back to 172.30.0.0/24
    await host.deno(
      `await (await import(HOST + "net/nat.ts")).addNat({ vmId: "vm1", guestIp: "172.30.0.2", bridge: "bg-brt" }, "banger_t3st");`,
    );

    const listener = outside.spawn([
      "socat",
      "-d",
      "-d",
      "TCP-LISTEN:8080,bind=198.51.100.2",
      "STDOUT",
    ]);
    const log = listener.stderr.pipeThrough(new TextDecoderStream()).getReader();
    try {
      await waitForLine(log, /listening on/);
      await guest.exec(["socat", "-", "TCP:198.51.100.2:8080,connect-timeout=5"], {
        stdin: "hello\n",
      });
      const accepted = await waitForLine(log, /accepting connection from/);
      assert(accepted.includes("198.51.100.1:"), accepted);
    } finally {
      try {
        listener.kill();
      } catch { /* already exited */ }
      await log.cancel();
      await listener.stdout.cancel();
      await listener.status;
    }
  },
);

gatedTest(
  "listNat() is empty when banger's table does not exist (root, netns)",
  NETNS,
  async () => {
    await using ns = await Netns.create();
    created.push(ns.name);
    assertEquals(
      await ns.deno(`return await (await import(HOST + "net/nat.ts")).listNat("banger_t3st");`),
      [],
    );
  },
);

gatedTest(
  "nat tests leave no network namespace behind (root)",
  [root(), programs("ip")],
  async () => {
    assertEquals((await listNetns()).filter((n) => created.includes(n)), []);
  },
);
