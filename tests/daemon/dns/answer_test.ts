import { assert, assertEquals } from "../../fixtures/assert.ts";
import { seededRandom } from "../../fixtures/fuzz.ts";
import { answerDnsQuery, type DnsZone } from "../../../daemon/dns/answer.ts";
import { decodeDnsMessage, type DnsMessage, DnsRcode, DnsType } from "../../../daemon/dns/wire.ts";
import {
  bytes,
  dnsQuery as query,
  hostilePacket,
  type QueryOptions as Ask,
} from "../../fixtures/dns_packets.ts";

const RECORDS = new Map([["dev", "172.16.0.2"], ["web-1", "172.16.0.3"]]);
const ZONE: DnsZone = { lookup: (label) => RECORDS.get(label), serial: 7, ttl: 5 };

function ask(name: string, type: number = DnsType.A, o: Ask = {}): DnsMessage {
  const reply = answerDnsQuery(query(name, type, o), ZONE);
  assert(reply, `expected a reply for ${name}`);
  return decodeDnsMessage(reply);
}

const SOA = {
  name: "vm",
  type: DnsType.SOA,
  class: 1,
  ttl: 5,
  data: {
    soa: {
      mname: "localhost",
      rname: "hostmaster.localhost",
      serial: 7,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: 5,
    },
  },
};

Deno.test("answerDnsQuery() answers an A query with these exact bytes", () => {
  const q = bytes([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0], [
    3,
    "dev",
    2,
    "vm",
    0,
    0,
    1,
    0,
    1,
  ]);
  assertEquals(
    answerDnsQuery(q, ZONE),
    bytes(
      [0x12, 0x34, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 0], // QR AA RD, NOERROR, QD=1 AN=1
      [3, "dev", 2, "vm", 0, 0, 1, 0, 1],
      [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 172, 16, 0, 2], // TTL 5, 172.16.0.2
    ),
  );
});

Deno.test("answerDnsQuery() answers NXDOMAIN with the SOA in authority, with these exact bytes", () => {
  const q = bytes([0xbe, 0xef, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], [4, "nope", 2, "vm", 0, 0, 1, 0, 1]);
  assertEquals(
    answerDnsQuery(q, ZONE),
    bytes(
      [0xbe, 0xef, 0x84, 0x03, 0, 1, 0, 0, 0, 1, 0, 0], // QR AA, no RD, NXDOMAIN, NS=1
      [4, "nope", 2, "vm", 0, 0, 1, 0, 1], // "vm" at offset 17
      [0xc0, 17, 0, 6, 0, 1, 0, 0, 0, 5, 0, 44], // SOA owner "vm", TTL 5, 44 bytes
      [9, "localhost", 0], // mname at offset 37
      [10, "hostmaster", 0xc0, 37], // rname compressed against mname
      [0, 0, 0, 7], // serial
      [0, 0, 0x0e, 0x10, 0, 0, 0x02, 0x58, 0, 1, 0x51, 0x80, 0, 0, 0, 5], // 3600 600 86400 5
    ),
  );
});

Deno.test("answerDnsQuery() matches names case-insensitively and echoes the question as sent", async (t) => {
  for (const name of ["DeV.Vm", "DEV.VM.", "dev.vm."]) {
    await t.step(name, () => {
      const r = ask(name);
      const echoed = name.replace(/\.$/, "");
      assertEquals(r.questions, [{ name: echoed, type: 1, class: 1 }]);
      assertEquals(r.answers, [{
        name: echoed,
        type: 1,
        class: 1,
        ttl: 5,
        data: { a: "172.16.0.2" },
      }]);
      assertEquals([r.rcode, r.aa, r.ra, r.qr, r.tc], [0, true, false, true, false]);
    });
  }
});

Deno.test("answerDnsQuery() copies RD and never sets RA", () => {
  assertEquals([ask("dev.vm", 1, { rd: true }).rd, ask("dev.vm", 1, { rd: true }).ra], [
    true,
    false,
  ]);
  assertEquals([ask("dev.vm", 1, { rd: false }).rd, ask("nope.vm", 1, { rd: false }).ra], [
    false,
    false,
  ]);
  assertEquals(ask("example.com", 1, { rd: true }).rd, true);
  assertEquals(ask("example.com", 1, { id: 99 }).id, 99);
});

Deno.test("answerDnsQuery() answers NODATA with the SOA for other types of an existing name", async (t) => {
  for (const type of [DnsType.AAAA, 15, 16, DnsType.SOA, DnsType.NS]) {
    await t.step(`type ${type}`, () => {
      const r = ask("web-1.vm", type);
      assertEquals([r.rcode, r.aa, r.answers.length], [DnsRcode.NOERROR, true, 0]);
      assertEquals(r.authority, [SOA]);
    });
  }
  await t.step("ANY gets the A record", () => {
    assertEquals(ask("web-1.vm", DnsType.ANY).answers.map((a) => a.data), [{ a: "172.16.0.3" }]);
  });
});

Deno.test("answerDnsQuery() answers NXDOMAIN with the SOA for names not in the zone's records", async (t) => {
  for (const name of ["nope.vm", "a.dev.vm", "de\\.v.vm", "-.vm", "de\\000v.vm"]) {
    await t.step(name, () => {
      const r = ask(name, DnsType.AAAA);
      assertEquals([r.rcode, r.aa, r.answers], [DnsRcode.NXDOMAIN, true, []]);
      assertEquals(r.authority, [SOA]);
    });
  }
});

Deno.test("answerDnsQuery() answers SOA and NS at the zone apex", async (t) => {
  await t.step("SOA", () => assertEquals(ask("vm", DnsType.SOA).answers, [SOA]));
  await t.step("NS, case kept", () => {
    assertEquals(ask("VM.", DnsType.NS).answers, [
      { name: "VM", type: DnsType.NS, class: 1, ttl: 5, data: { ns: "localhost" } },
    ]);
  });
  await t.step("ANY", () => {
    assertEquals(ask("vm", DnsType.ANY).answers.map((a) => a.type), [DnsType.SOA, DnsType.NS]);
  });
  await t.step("A is NODATA", () => {
    const r = ask("vm", DnsType.A);
    assertEquals([r.rcode, r.aa, r.answers, r.authority], [0, true, [], [SOA]]);
  });
});

Deno.test("answerDnsQuery() refuses names outside .vm, other classes and zone transfers", async (t) => {
  const cases: [string, number, Ask][] = [
    ["example.com", DnsType.A, {}],
    ["xvm", DnsType.A, {}],
    ["dev.vm.example", DnsType.A, {}],
    ["dev\\.vm", DnsType.A, {}], // one label "dev.vm" under the root
    ["", DnsType.NS, {}],
    ["dev.vm", DnsType.A, { cls: 3 }],
    ["vm", DnsType.AXFR, {}],
    ["vm", DnsType.IXFR, {}],
  ];
  for (const [name, type, o] of cases) {
    await t.step(`${name || "."} type ${type} class ${o.cls ?? 1}`, () => {
      const r = ask(name, type, o);
      assertEquals([r.rcode, r.aa, r.answers, r.authority], [DnsRcode.REFUSED, false, [], []]);
      assertEquals(r.questions.map((q) => q.name), [name]);
    });
  }
  await t.step(
    "class ANY is answered",
    () => assertEquals(ask("dev.vm", 1, { cls: 255 }).rcode, 0),
  );
});

Deno.test("answerDnsQuery() answers FORMERR unless there is exactly one question", async (t) => {
  const header = (qd: number) => [0, 9, 1, 0, 0, qd, 0, 0, 0, 0, 0, 0];
  const q = [3, "dev", 2, "vm", 0, 0, 1, 0, 1];
  for (
    const [what, packet] of [["no question", bytes(header(0))], [
      "two",
      bytes(header(2), q, q),
    ]] as const
  ) {
    await t.step(what, () => {
      const reply = answerDnsQuery(packet, ZONE);
      assert(reply);
      assertEquals(reply, bytes([0, 9, 0x81, DnsRcode.FORMERR, 0, 0, 0, 0, 0, 0, 0, 0]));
    });
  }
  await t.step("a truncated question keeps the id", () => {
    const reply = answerDnsQuery(bytes(header(1), [3, "dev", 2]), ZONE);
    assert(reply);
    assertEquals([decodeDnsMessage(reply).id, decodeDnsMessage(reply).rcode], [
      9,
      DnsRcode.FORMERR,
    ]);
  });
});

Deno.test("answerDnsQuery() answers NOTIMP for opcodes other than QUERY", async (t) => {
  for (const opcode of [1, 2, 4, 5, 15]) {
    await t.step(`opcode ${opcode}`, () => {
      const r = ask("dev.vm", 1, { opcode });
      assertEquals([r.rcode, r.opcode, r.qr, r.answers], [DnsRcode.NOTIMP, opcode, true, []]);
    });
  }
});

Deno.test("answerDnsQuery() drops responses and packets shorter than a header", () => {
  const response = query("dev.vm", 1);
  response[2] |= 0x80;
  assertEquals(answerDnsQuery(response, ZONE), undefined);
  assertEquals(answerDnsQuery(new Uint8Array(11), ZONE), undefined);
  assertEquals(answerDnsQuery(new Uint8Array(), ZONE), undefined);
});

Deno.test("answerDnsQuery() answers EDNS0 queries with a minimal OPT", async (t) => {
  const opt = { name: "", type: DnsType.OPT, class: 1232, ttl: 0, data: { raw: new Uint8Array() } };
  await t.step("version 0: the answer plus one empty OPT", () => {
    const r = ask("dev.vm", 1, { edns: true });
    assertEquals([r.rcode, r.answers.length, r.additional], [0, 1, [opt]]);
  });
  await t.step("NXDOMAIN keeps the OPT", () => {
    assertEquals(ask("nope.vm", 1, { edns: true }).additional, [opt]);
  });
  await t.step("version 1: BADVERS in the OPT's extended rcode", () => {
    const r = ask("dev.vm", 1, { edns: { version: 1 } });
    assertEquals([r.rcode, r.answers, r.additional], [0, [], [{ ...opt, ttl: 0x01000000 }]]);
  });
  await t.step("two OPT records or a named OPT: FORMERR", () => {
    assertEquals(ask("dev.vm", 1, { edns: { count: 2 } }).rcode, DnsRcode.FORMERR);
    assertEquals(ask("dev.vm", 1, { edns: { name: "vm" } }).rcode, DnsRcode.FORMERR);
  });
});

Deno.test("answerDnsQuery() answers SERVFAIL when the zone holds an unencodable address", () => {
  const r = answerDnsQuery(query("bad.vm", 1), { lookup: () => "not-an-ip", serial: 1, ttl: 5 });
  assert(r);
  assertEquals(decodeDnsMessage(r).rcode, DnsRcode.SERVFAIL);
});

Deno.test("answerDnsQuery() keeps its largest response below 512 bytes", () => {
  const l63 = "a".repeat(63);
  const longest = `${l63}.${l63}.${l63}.${"b".repeat(58)}.vm`;
  const nx = answerDnsQuery(query(longest, 1, { edns: true }), ZONE);
  assert(nx);
  assertEquals(decodeDnsMessage(nx).rcode, DnsRcode.NXDOMAIN);
  assert(nx.length < 512, `NXDOMAIN for a 255-byte name is ${nx.length} bytes`);
});

Deno.test("answerDnsQuery() never throws and only emits decodable responses for hostile input", () => {
  const seed = 0x5eed;
  const rand = seededRandom(seed);
  let replies = 0;
  for (let i = 0; i < 20_000; i++) {
    const packet = hostilePacket(rand);
    let reply: Uint8Array | undefined;
    try {
      reply = answerDnsQuery(packet, ZONE);
    } catch (err) {
      throw new Error(`seed ${seed} case ${i} threw for [${packet}]`, { cause: err });
    }
    if (reply === undefined) continue;
    replies++;
    const r = decodeDnsMessage(reply);
    assertEquals([r.qr, r.id], [true, (packet[0] << 8) | packet[1]], `seed ${seed} case ${i}`);
  }
  // Most mutated queries still parse as queries (seed 0x5eed: 15262 of 20000 answered): an
  // answerer that gave up on everything (always undefined) must not pass.
  assert(replies >= 10_000, `seed ${seed}: only ${replies} of 20000 hostile packets answered`);
});
