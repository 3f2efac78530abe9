import dgram from "node:dgram";
import { seededRandom } from "../../fixtures/fuzz.ts";
import net from "node:net";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../../fixtures/assert.ts";
import { bytes, dnsQuery, hostilePacket } from "../../fixtures/dns_packets.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";
import { DnsError, DnsServer } from "../../../daemon/dns/server.ts";
import { decodeDnsMessage, type DnsMessage, DnsRcode, DnsType } from "../../../daemon/dns/wire.ts";
import { Logger } from "../../../daemon/logger.ts";
import { runText } from "../../../host/os/exec.ts";

const HOST = "127.0.0.1";

/** Rejects with `what` if `promise` has not settled in 10 s, so a lost packet fails, not hangs. */
async function guard<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within 10 s`)), 10_000);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function udpSocket(): Promise<dgram.Socket> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, HOST, () => resolve()));
  return socket;
}

function close(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => socket.close(() => resolve()));
}

/** One query over UDP from a fresh node:dgram socket; the reply with the same id. */
async function udpAsk(port: number, packet: Uint8Array): Promise<DnsMessage> {
  const socket = await udpSocket();
  try {
    const id = (packet[0] << 8) | packet[1];
    const reply = new Promise<DnsMessage>((resolve) => {
      socket.on("message", (msg: Uint8Array) => {
        const m = decodeDnsMessage(msg);
        if (m.id === id) resolve(m);
      });
    });
    socket.send(packet, port, HOST);
    return await guard(reply, `no UDP answer from ${HOST}:${port}`);
  } finally {
    await close(socket);
  }
}

let nextId = 1;
function ask(port: number, name: string, type: number = DnsType.A): Promise<DnsMessage> {
  return udpAsk(port, dnsQuery(name, type, { id: nextId++ & 0xffff }));
}

/** Sends length-prefixed queries on `socket` (pipelined) and reads their replies. */
function tcpExchange(socket: net.Socket, packets: Uint8Array[]): Promise<DnsMessage[]> {
  const replies = new Promise<DnsMessage[]>((resolve, reject) => {
    let buf = new Uint8Array(0);
    const out: DnsMessage[] = [];
    socket.on("data", (chunk: Uint8Array) => {
      buf = Uint8Array.from([...buf, ...chunk]);
      while (buf.length >= 2 && buf.length >= 2 + ((buf[0] << 8) | buf[1])) {
        const length = (buf[0] << 8) | buf[1];
        out.push(decodeDnsMessage(buf.subarray(2, 2 + length)));
        buf = buf.slice(2 + length);
      }
      if (out.length === packets.length) resolve(out);
    });
    socket.on("close", () => reject(new Error(`TCP closed after ${out.length} replies`)));
  });
  socket.write(bytes(...packets.map((p) => [p.length >> 8, p.length & 0xff, ...p])));
  return guard(replies, "no TCP answers");
}

function tcpConnect(port: number): net.Socket {
  const socket = net.connect({ host: HOST, port });
  socket.on("error", () => {});
  return socket;
}

/** Sends queries on a fresh TCP connection and reads their replies. */
async function tcpAsk(port: number, packets: Uint8Array[]): Promise<DnsMessage[]> {
  const socket = tcpConnect(port);
  try {
    return await tcpExchange(socket, packets);
  } finally {
    socket.destroy();
  }
}

async function started(): Promise<DnsServer & { port: number }> {
  const server = new DnsServer();
  await server.start({ host: HOST, port: 0 });
  const address = server.address;
  assert(address);
  return Object.assign(server, { port: address.port });
}

function dig(port: number, ...args: string[]): Promise<string> {
  return runText("dig", [`@${HOST}`, "-p", String(port), "+tries=1", "+time=5", ...args]);
}

Deno.test("DnsServer answers A, NXDOMAIN and REFUSED over UDP", async () => {
  await using server = await started();
  server.set("dev", "172.16.0.2");
  const a = await ask(server.port, "Dev.VM.");
  assertEquals([a.rcode, a.aa, a.ra], [DnsRcode.NOERROR, true, false]);
  assertEquals(a.answers.map((r) => [r.name, r.ttl, r.data]), [["Dev.VM", 5, { a: "172.16.0.2" }]]);
  const nx = await ask(server.port, "nope.vm");
  assertEquals([nx.rcode, nx.authority.map((r) => r.type)], [DnsRcode.NXDOMAIN, [DnsType.SOA]]);
  const refused = await ask(server.port, "example.com");
  assertEquals([refused.rcode, refused.aa], [DnsRcode.REFUSED, false]);
  const nodata = await ask(server.port, "dev.vm", DnsType.AAAA);
  assertEquals([nodata.rcode, nodata.answers.length], [DnsRcode.NOERROR, 0]);
});

Deno.test("DnsServer.set(), remove() and replaceAll() are visible to the next query", async () => {
  await using server = await started();
  const addressOf = async (name: string) =>
    (await ask(server.port, `${name}.vm`)).answers.map((r) => r.data);
  server.set("a", "10.0.0.1");
  assertEquals(await addressOf("a"), [{ a: "10.0.0.1" }]);
  server.set("a", "10.0.0.9");
  assertEquals(await addressOf("a"), [{ a: "10.0.0.9" }]);
  assertEquals(server.remove("a"), true);
  assertEquals(server.remove("a"), false);
  assertEquals((await ask(server.port, "a.vm")).rcode, DnsRcode.NXDOMAIN);
  server.set("old", "10.0.0.2");
  server.replaceAll([["b", "10.0.0.3"], ["c", "10.0.0.4"]]);
  assertEquals((await ask(server.port, "old.vm")).rcode, DnsRcode.NXDOMAIN);
  assertEquals(await addressOf("c"), [{ a: "10.0.0.4" }]);
  server.replaceAll({ d: "10.0.0.5" });
  assertEquals([...server.records], [["d", "10.0.0.5"]]);
});

Deno.test("DnsServer.replaceAll() and set() bump the SOA serial", async () => {
  await using server = await started();
  const serial = async () => {
    const soa = (await ask(server.port, "vm", DnsType.SOA)).answers[0]?.data;
    assert(soa && "soa" in soa);
    return soa.soa.serial;
  };
  const first = await serial();
  server.set("x", "10.0.0.1");
  const second = await serial();
  assert(second !== first, "the serial changes when a record is added");
  server.set("x", "10.0.0.1");
  assertEquals(await serial(), second, "setting the same address again changes nothing");
});

Deno.test("DnsServer answers pipelined queries over TCP on the same port", async () => {
  await using server = await started();
  assertEquals(server.address?.tcp, true);
  server.set("dev", "172.16.0.2");
  const replies = await tcpAsk(server.port, [
    dnsQuery("dev.vm", DnsType.A, { id: 1 }),
    dnsQuery("nope.vm", DnsType.A, { id: 2 }),
    dnsQuery("example.com", DnsType.A, { id: 3 }),
  ]);
  assertEquals(replies.map((r) => [r.id, r.rcode, r.answers.length]), [
    [1, DnsRcode.NOERROR, 1],
    [2, DnsRcode.NXDOMAIN, 0],
    [3, DnsRcode.REFUSED, 0],
  ]);
});

Deno.test("DnsServer closes TCP connections beyond 64 and keeps serving the others", async () => {
  await using server = await started();
  server.set("dev", "172.16.0.2");
  const sockets: net.Socket[] = [];
  try {
    for (let i = 0; i < 64; i++) {
      const socket = tcpConnect(server.port);
      sockets.push(socket);
      await guard(new Promise((resolve) => socket.once("connect", resolve)), "no connect");
    }
    const extra = tcpConnect(server.port);
    sockets.push(extra);
    await guard(new Promise((resolve) => extra.once("close", resolve)), "65th not closed");
    const [reply] = await tcpExchange(sockets[0], [dnsQuery("dev.vm", DnsType.A, { id: 5 })]);
    assertEquals(reply.answers.length, 1);
  } finally {
    for (const socket of sockets) socket.destroy();
  }
});

gatedTest("DnsServer answers dig over UDP and TCP (dig)", [programs("dig")], async (t) => {
  await using server = await started();
  server.set("dev", "172.16.0.2");
  await t.step("A, mixed case and trailing dot", async () => {
    assertEquals((await dig(server.port, "+short", "DeV.vM.", "A")).trim(), "172.16.0.2");
  });
  await t.step("flags: qr aa rd, no ra", async () => {
    const out = await dig(server.port, "dev.vm", "A");
    assertMatch(out, /status: NOERROR/);
    assertMatch(out, /flags: qr aa rd;/);
  });
  await t.step("NXDOMAIN with the SOA", async () => {
    const out = await dig(server.port, "nope.vm", "A");
    assertMatch(out, /status: NXDOMAIN/);
    assertMatch(
      out,
      /AUTHORITY SECTION:\nvm\.\s+5\s+IN\s+SOA\s+localhost\. hostmaster\.localhost\./,
    );
  });
  await t.step("REFUSED outside .vm", async () => {
    assertMatch(await dig(server.port, "example.com", "A"), /status: REFUSED/);
  });
  await t.step("AAAA is NODATA", async () => {
    const out = await dig(server.port, "dev.vm", "AAAA");
    assertMatch(out, /status: NOERROR.*ANSWER: 0/s);
  });
  await t.step("over TCP", async () => {
    assertEquals((await dig(server.port, "+tcp", "+short", "dev.vm")).trim(), "172.16.0.2");
  });
  await t.step("without EDNS", async () => {
    assertEquals((await dig(server.port, "+noedns", "+short", "dev.vm")).trim(), "172.16.0.2");
  });
});

Deno.test("DnsServer.stop() closes both sockets so the port can be bound again", async () => {
  const server = await started();
  const port = server.port;
  await server.stop();
  assertEquals([server.listening, server.address], [false, undefined]);
  await server.stop();
  const udp = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(port, HOST, () => resolve());
  });
  await close(udp);
  const tcp = net.createServer();
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, HOST, () => resolve());
  });
  await new Promise<void>((resolve) => tcp.close(() => resolve()));
  await server.start({ host: HOST, port });
  await server.stop();
});

Deno.test("DnsServer.start() throws DnsError naming the address when the UDP port is taken", async () => {
  const squatter = await udpSocket();
  try {
    const port = squatter.address().port;
    const server = new DnsServer();
    const err = await assertRejects(
      () => server.start({ host: HOST, port }),
      DnsError,
      `Cannot serve DNS on "${HOST}:${port}" (UDP): address already in use (EADDRINUSE)`,
    );
    assertStringIncludes(err.hint ?? "", "dns_listen");
    assertEquals(err.code, "unavailable");
    assertEquals(server.listening, false);
  } finally {
    await close(squatter);
  }
});

Deno.test("DnsServer.start() serves UDP alone and warns when the TCP port is taken", async () => {
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, HOST, () => resolve()));
  const lines: string[] = [];
  try {
    const address = squatter.address();
    assert(address && typeof address === "object");
    await using server = new DnsServer({ logger: new Logger({ write: (l) => lines.push(l) }) });
    await server.start({ host: HOST, port: address.port });
    assertEquals(server.address, { host: HOST, port: address.port, tcp: false });
    server.set("dev", "172.16.0.2");
    assertEquals((await ask(address.port, "dev.vm")).answers.length, 1);
    assertStringIncludes(lines.join(""), "address already in use (EADDRINUSE)");
  } finally {
    await new Promise<void>((resolve) => squatter.close(() => resolve()));
  }
});

Deno.test("DnsServer.start() refuses to start twice, a non-IPv4 host and a non-local address", async () => {
  await using server = await started();
  await assertRejects(() => server.start({ host: HOST, port: 0 }), DnsError, "already listens");
  await using other = new DnsServer();
  const first = other.start({ host: HOST, port: 0 });
  await assertRejects(() => other.start({ host: HOST, port: 0 }), DnsError, "already starting");
  await first;
  await assertRejects(
    () => new DnsServer().start({ host: "localhost", port: 0 }),
    DnsError,
    '"localhost" is not an IPv4 address',
  );
  await assertRejects(
    () => new DnsServer().start({ host: "192.0.2.1", port: 0 }),
    DnsError,
    '"192.0.2.1:0" (UDP): no such local address (EADDRNOTAVAIL)',
  );
});

Deno.test("DnsServer.set() rejects names that are not DNS labels and bad addresses", async (t) => {
  const server = new DnsServer();
  for (const name of ["", "-a", "a-", "Dev", "a.b", "a_b", "x".repeat(64), "dev.vm"]) {
    await t.step(JSON.stringify(name), () => {
      assertThrows(() => server.set(name, "10.0.0.1"), DnsError, "is not a DNS label");
    });
  }
  await t.step("63 characters and inner dashes pass", () => {
    server.set("x".repeat(63), "10.0.0.1");
    server.set("a-b-1", "10.0.0.1");
  });
  await t.step("a bad address", () => {
    assertThrows(
      () => server.set("dev", "10.0.0.256"),
      DnsError,
      'Cannot publish DNS name "dev.vm": "10.0.0.256" is not an IPv4 address',
    );
  });
  await t.step("replaceAll() changes nothing when one entry is invalid", () => {
    const before = server.records;
    assertThrows(() => server.replaceAll([["ok", "10.0.0.2"], ["Bad", "10.0.0.3"]]), DnsError);
    assertEquals(server.records, before);
  });
});

Deno.test("DnsServer.lookup() treats dev, dev.vm and DEV.vm. alike", () => {
  const server = new DnsServer();
  server.set("dev", "172.16.0.2");
  for (const name of ["dev", "dev.vm", "DEV.vm.", "Dev"]) {
    assertEquals(server.lookup(name), "172.16.0.2", name);
  }
  assertEquals(server.lookup("dev.example"), undefined);
});

Deno.test("DnsServer keeps answering after hostile packets over UDP and TCP", async () => {
  await using server = await started();
  server.set("dev", "172.16.0.2");
  const rand = seededRandom(0xbad5eed);
  const hostile = await udpSocket();
  let replies = 0;
  hostile.on("message", () => replies++);
  try {
    // Rounds of 50, each followed by an answered query: never enough to fill the
    // socket's receive buffer, so the valid query cannot be dropped for lack of room.
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 50; i++) hostile.send(hostilePacket(rand), server.port, HOST);
      assertEquals((await ask(server.port, "dev.vm")).answers.length, 1, `round ${round}`);
    }
    assert(replies > 0, "some hostile packets were answered (FORMERR, NOTIMP...)");
  } finally {
    await close(hostile);
  }
  for (let round = 0; round < 20; round++) {
    const garbage = Array.from({ length: 5 }, () => hostilePacket(rand));
    const frames = bytes(...garbage.map((p) => [p.length >> 8, p.length & 0xff, ...p]));
    const cut = frames.subarray(0, Math.floor(rand() * frames.length));
    const socket = tcpConnect(server.port);
    await new Promise<void>((resolve) => socket.end(cut, () => resolve()));
    socket.destroy();
  }
  const [tcp] = await tcpAsk(server.port, [dnsQuery("dev.vm", DnsType.A, { id: 7 })]);
  assertEquals(tcp.answers.length, 1);
  assertEquals(server.listening, true);
});
