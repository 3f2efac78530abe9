import { createSocket } from "node:dgram";
import {
  formatPublication,
  parsePublication,
  PortForwarder,
  PublishError,
} from "../../../daemon/network/published_ports.ts";
import { Logger } from "../../../daemon/logger.ts";
import { assertEquals, assertRejects, assertThrows, within } from "../../fixtures/assert.ts";

const quiet = new Logger({ write: () => {} }, "error");
const vm = { id: "v1", name: "dev", guestIp: "127.0.0.1" };

Deno.test("parsePublication() reads [ADDR:]HOST:GUEST[/udp] and a lone port", () => {
  assertEquals(parsePublication("8080:80"), {
    address: "127.0.0.1",
    hostPort: 8080,
    guestPort: 80,
    proto: "tcp",
  });
  assertEquals(parsePublication("3000"), {
    address: "127.0.0.1",
    hostPort: 3000,
    guestPort: 3000,
    proto: "tcp",
  });
  assertEquals(parsePublication("0.0.0.0:5353:53/udp"), {
    address: "0.0.0.0",
    hostPort: 5353,
    guestPort: 53,
    proto: "udp",
  });
  assertEquals(formatPublication(parsePublication("8080:80")), "127.0.0.1:8080->80/tcp");
  for (
    const bad of [
      "",
      "80:",
      "x:80",
      "70000:80",
      "8080:0",
      "1.2.3:80:80",
      "80/sctp",
      "300.1.1.1:80:80",
    ]
  ) {
    const err = assertThrows(() => parsePublication(bad), PublishError);
    assertEquals(err.code, "invalid_argument", bad);
  }
});

/**
 * A free port below the kernel's ephemeral range (32768+): a port the test frees again
 * must not be handed to another test's `port: 0` listener while it checks it is closed.
 */
function freePort(): number {
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * 10_000);
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch (err) {
      if (!(err instanceof Deno.errors.AddrInUse)) throw err;
    }
  }
}

Deno.test("PortForwarder splices TCP both ways, refuses a taken port naming its holder, and closes", async () => {
  const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const guestPort = (echo.addr as Deno.NetAddr).port;
  const serving = (async () => {
    for await (const c of echo) c.readable.pipeTo(c.writable).catch(() => {});
  })();
  const forwarder = new PortForwarder(quiet);
  const hostPort = freePort();
  try {
    const p = { address: "127.0.0.1", hostPort, guestPort, proto: "tcp" as const };
    await forwarder.open(vm, [p]);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: hostPort });
    await conn.write(new TextEncoder().encode("hello through the publication"));
    const buf = new Uint8Array(64);
    const n = await within(conn.read(buf), 10_000, "the echo") ?? 0;
    assertEquals(new TextDecoder().decode(buf.subarray(0, n)), "hello through the publication");
    conn.close();
    const other = new PortForwarder(quiet);
    const err = await assertRejects(
      () => other.open({ ...vm, id: "v2", name: "other" }, [p], () => 'VM "dev"'),
      PublishError,
    );
    assertEquals(err.code, "conflict");
    assertEquals(
      err.message.includes(`127.0.0.1:${hostPort} is in use by VM "dev"`),
      true,
      err.message,
    );
    assertEquals(forwarder.active("v1"), [p]);
    forwarder.close("v1");
    assertEquals(forwarder.active("v1"), []);
    await assertRejects(() => Deno.connect({ hostname: "127.0.0.1", port: hostPort }));
  } finally {
    forwarder.closeAll();
    echo.close();
    await serving.catch(() => {});
  }
});

Deno.test("PortForwarder relays UDP datagrams and their replies", async () => {
  const guest = createSocket("udp4");
  await new Promise<void>((r) => guest.bind(0, "127.0.0.1", () => r()));
  guest.on("message", (msg, from) => guest.send(msg, from.port, from.address));
  const forwarder = new PortForwarder(quiet);
  const client = createSocket("udp4");
  try {
    const hostPort = freePort();
    await forwarder.open(vm, [{
      address: "127.0.0.1",
      hostPort,
      guestPort: guest.address().port,
      proto: "udp",
    }]);
    const reply = new Promise<string>((resolve) =>
      client.once("message", (m) => resolve(new TextDecoder().decode(m)))
    );
    client.send(new TextEncoder().encode("ping over udp"), hostPort, "127.0.0.1");
    assertEquals(await within(reply, 10_000, "the UDP reply"), "ping over udp");
  } finally {
    forwarder.closeAll();
    client.close();
    guest.close();
  }
});
