import { guestPorts, PROBE_CONCURRENCY } from "../../../daemon/vm/ports.ts";
import type { VmDeps } from "../../../daemon/vm/deps.ts";
import type { VmRecord } from "../../../store/vms.ts";
import { assertEquals, within } from "../../fixtures/assert.ts";

Deno.test("guestPorts() probes the ports a guest reports a few at a time, however many it claims", async () => {
  // HTTP servers that answer one waiting connection at a time: a prober without a bound
  // has every port's connection waiting at once.
  const listeners = Array.from(
    { length: 3 * PROBE_CONCURRENCY },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const waiting: Deno.Conn[] = [];
  let most = 0;
  const accepting = listeners.map(async (l) => {
    for await (const conn of l) {
      waiting.push(conn);
      most = Math.max(most, waiting.length);
    }
  });
  let done = false;
  const answering = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 10));
      const conn = waiting.shift();
      if (!conn) continue;
      await conn.write(new TextEncoder().encode("HTTP/1.0 200 OK\r\n\r\n")).catch(() => 0);
      conn.close();
    }
  })();
  try {
    const ports = listeners.map((l) => ({
      proto: "tcp",
      address: "0.0.0.0",
      port: (l.addr as Deno.NetAddr).port,
    }));
    const vm = {
      id: "m1",
      name: "many",
      status: "running",
      guestIp: "127.0.0.1",
      spec: { vmm: "qemu" },
      runtime: { vmDir: "/nonexistent" },
    };
    const deps = {
      guest: { agent: () => Promise.resolve({ ports }) },
      driver: () => ({ hasVsock: true }),
    };
    const views = await within(
      guestPorts(vm as unknown as VmRecord, deps as unknown as VmDeps, { probeTimeoutMs: 30_000 }),
      60_000,
      "the probes",
    );
    assertEquals(views.filter((v) => v.url).length, ports.length, "every port answered HTTP");
    assertEquals(most <= PROBE_CONCURRENCY, true, `${most} probes waited at once`);
  } finally {
    done = true;
    await answering;
    for (const l of listeners) l.close();
    for (const c of waiting) c.close();
    await Promise.allSettled(accepting);
  }
});
