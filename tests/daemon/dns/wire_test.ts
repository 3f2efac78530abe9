import { bytes, type Part } from "../../fixtures/dns_packets.ts";
import { assert, assertEquals, assertThrows } from "../../fixtures/assert.ts";
import {
  decodeDnsMessage,
  DNS_CLASS_IN,
  DnsError,
  type DnsMessage,
  DnsType,
  encodeDnsMessage,
} from "../../../daemon/dns/wire.ts";

function message(fields: Partial<DnsMessage>): DnsMessage {
  return {
    id: 0,
    qr: false,
    opcode: 0,
    aa: false,
    tc: false,
    rd: false,
    ra: false,
    rcode: 0,
    questions: [],
    answers: [],
    authority: [],
    additional: [],
    ...fields,
  };
}

/** A header with the given id, flags and QD/AN/NS/AR counts. */
function header(id: number, flags: number, ...counts: number[]): Part[] {
  return [id >> 8, id & 0xff, flags >> 8, flags & 0xff, ...counts.flatMap((c) => [0, c])];
}

Deno.test("decodeDnsMessage() reads a query with an EDNS0 OPT carrying a cookie", () => {
  const packet = bytes(
    header(0xa1b2, 0x0120, 1, 0, 0, 1), // RD + AD, as dig sends
    [3, "dev", 2, "vm", 0, 0, 1, 0, 1],
    [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0], // OPT: root owner, UDP payload 1232, version 0
    [0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8], // one COOKIE option (code 10, 8 bytes)
  );
  const m = decodeDnsMessage(packet);
  assertEquals(m.id, 0xa1b2);
  assertEquals([m.qr, m.opcode, m.rd, m.aa], [false, 0, true, false]);
  assertEquals(m.questions, [{ name: "dev.vm", type: 1, class: 1 }]);
  assertEquals(m.additional.length, 1);
  const opt = m.additional[0];
  assertEquals([opt.name, opt.type, opt.class, opt.ttl], ["", 41, 1232, 0]);
  assertEquals(opt.data, { raw: bytes(0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8) });
});

Deno.test("encodeDnsMessage() compresses owner, NS and SOA names against earlier names", () => {
  const packet = encodeDnsMessage(message({
    id: 7,
    qr: true,
    aa: true,
    questions: [{ name: "Dev.VM", type: DnsType.A, class: DNS_CLASS_IN }],
    answers: [{ name: "dev.vm", type: DnsType.A, class: 1, ttl: 5, data: { a: "10.0.0.1" } }],
    authority: [{ name: "vm", type: DnsType.NS, class: 1, ttl: 5, data: { ns: "ns.vm" } }],
  }));
  assertEquals(
    packet,
    bytes(
      header(7, 0x8400, 1, 1, 1, 0),
      [3, "Dev", 2, "VM", 0, 0, 1, 0, 1], // question name at offset 12, its "VM" at 16
      [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1], // owner: pointer, any case
      [0xc0, 16, 0, 2, 0, 1, 0, 0, 0, 5, 0, 5, 2, "ns", 0xc0, 16], // NS target compressed too
    ),
  );
});

Deno.test("encodeDnsMessage() and decodeDnsMessage() round-trip escaped labels", () => {
  const m = message({
    id: 0xffff,
    opcode: 2,
    rd: true,
    questions: [
      { name: "a\\.b.\\000x\\\\.vm", type: 255, class: 255 },
      { name: "", type: DnsType.NS, class: 1 },
    ],
    answers: [{
      name: "vm",
      type: DnsType.SOA,
      class: 1,
      ttl: 0xffffffff,
      data: {
        soa: {
          mname: "localhost",
          rname: "hostmaster.localhost",
          serial: 0xfffffffe,
          refresh: 1,
          retry: 2,
          expire: 3,
          minimum: 4,
        },
      },
    }],
    additional: [{ name: "x", type: 99, class: 1, ttl: 0, data: { raw: bytes(1, 2, 3) } }],
  });
  const packet = encodeDnsMessage(m);
  assertEquals(packet.subarray(12, 24), bytes(3, "a.b", 3, 0, "x\\", 2, "vm", 0));
  assertEquals(decodeDnsMessage(packet), m);
});

Deno.test("encodeDnsMessage() writes the same bytes with or without the trailing dot", () => {
  const q = (name: string) =>
    encodeDnsMessage(message({ questions: [{ name, type: 1, class: 1 }] }));
  assertEquals(q("dev.vm."), q("dev.vm"));
  assertEquals(q("."), q(""));
  assertEquals(q("").subarray(12), bytes(0, 0, 1, 0, 1));
});

Deno.test("encodeDnsMessage() enforces the label and name limits", async (t) => {
  const q = (name: string) =>
    encodeDnsMessage(message({ questions: [{ name, type: 1, class: 1 }] }));
  const l63 = "a".repeat(63);
  await t.step("a 63-byte label passes, 64 throws", () => {
    assertEquals(q(`${l63}.vm`).length, 12 + 64 + 4 + 4);
    assertThrows(() => q(`${l63}a.vm`), DnsError, "longer than 63 bytes");
  });
  await t.step("a 255-byte name passes, 256 throws", () => {
    const base = `${l63}.${l63}.${l63}.`;
    assertEquals(q(base + "b".repeat(61)).length, 12 + 255 + 4);
    assertThrows(() => q(base + "b".repeat(62)), DnsError, "longer than 255 bytes");
  });
  await t.step("empty labels, bad escapes and non-Latin-1 characters throw", () => {
    assertThrows(
      () => q("a..vm"),
      DnsError,
      'Cannot encode DNS name "a..vm": it has an empty label',
    );
    assertThrows(() => q(".vm"), DnsError, "empty label");
    assertThrows(() => q("a\\"), DnsError, "escape at character 2");
    assertThrows(() => q("a\\256"), DnsError, "escape");
    assertThrows(() => q("\u0100.vm"), DnsError, "outside Latin-1");
  });
  await t.step("an A record whose address is not IPv4 throws", () => {
    const bad = message({
      answers: [{ name: "a", type: 1, class: 1, ttl: 1, data: { a: "1.2.3" } }],
    });
    assertThrows(() => encodeDnsMessage(bad), DnsError, '"1.2.3" is not an IPv4 address');
  });
});

Deno.test("decodeDnsMessage() rejects malformed packets with DnsError", async (t) => {
  const question: Part = [3, "dev", 2, "vm", 0, 0, 1, 0, 1];
  const cases: [string, Uint8Array, string][] = [
    ["a packet shorter than a header", bytes(0, 1, 0), "shorter than a header"],
    ["a question cut off", bytes(header(1, 0, 1, 0, 0, 0), 3, "de"), "cut off"],
    ["a name with no end", bytes(header(1, 0, 1, 0, 0, 0), 3, "dev"), "cut off"],
    ["a question missing its class", bytes(header(1, 0, 1, 0, 0, 0), 0, 0, 1), "past the end"],
    ["a forward pointer", bytes(header(1, 0, 1, 0, 0, 0), 0xc0, 14, 0, 0, 1, 0, 1), "backwards"],
    ["a self pointer", bytes(header(1, 0, 1, 0, 0, 0), 0xc0, 12, 0, 1, 0, 1), "backwards"],
    ["a pointer cut off", bytes(header(1, 0, 1, 0, 0, 0), 0xc0), "cut off"],
    ["label type 0x40", bytes(header(1, 0, 1, 0, 0, 0), 0x41, "x", 0, 0, 1, 0, 1), "0x41"],
    ["trailing bytes", bytes(header(1, 0, 1, 0, 0, 0), question, 0), "1 trailing bytes"],
    ["more records than present", bytes(header(1, 0, 1, 1, 0, 0), question), "cut off"],
    [
      "record data past the end",
      bytes(header(1, 0, 0, 1, 0, 0), 0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 9, 1, 2, 3, 4),
      "past the end",
    ],
    [
      "an NS name shorter than its record data",
      bytes(header(1, 0, 0, 1, 0, 0), 0, 0, 2, 0, 1, 0, 0, 0, 5, 0, 3, 0, 0, 0),
      "wrong length",
    ],
    [
      "a name over 255 bytes",
      bytes(
        header(1, 0, 1, 0, 0, 0),
        Array(5).fill([50, "x".repeat(50)]),
        5,
        "xxxxx",
        0,
        0,
        1,
        0,
        1,
      ),
      "exceeds 255 bytes",
    ],
  ];
  for (const [what, packet, why] of cases) {
    await t.step(what, () => {
      assertThrows(() => decodeDnsMessage(packet), DnsError, why);
    });
  }
});

Deno.test("decodeDnsMessage() follows a chain of backward pointers", () => {
  const packet = bytes(
    header(9, 0, 2, 0, 0, 0),
    [2, "vm", 0, 0, 1, 0, 1], // offset 12: "vm"
    [3, "dev", 0xc0, 12, 0, 1, 0, 1], // "dev" + pointer to "vm"
  );
  const names = decodeDnsMessage(packet).questions.map((q) => q.name);
  assertEquals(names, ["vm", "dev.vm"]);
  assert(decodeDnsMessage(packet).questions.every((q) => q.type === 1));
});
