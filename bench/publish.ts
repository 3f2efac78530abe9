/**
 * Published ports: the daemon's forwarder (`daemon/network/published_ports.ts`) against a
 * direct connection to the same server in the same run. A local TCP server stands in for
 * the guest (the forwarder's cost is its own, whatever is behind it): connect latency
 * (connect, one byte there and back) and throughput (64 MiB one way). Prints medians and
 * ratios; never asserts.
 *
 * Run: `deno run -A bench/publish.ts`.
 *
 * @module
 */

import { PortForwarder } from "../daemon/network/published_ports.ts";
import { Logger } from "../daemon/logger.ts";
import { heading, median, ms, row, timeRuns } from "./_stats.ts";

const BYTES = 64 << 20;

/** A server that answers one byte with one byte, and reads anything else to the end. */
function server(): { port: number; close(): void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const c of l) {
      (async () => {
        const buf = new Uint8Array(1 << 16);
        const first = await c.read(buf);
        if (first === 1) await c.write(buf.subarray(0, 1));
        while ((await c.read(buf)) !== null) { /* drain */ }
        c.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  return { port: (l.addr as Deno.NetAddr).port, close: () => l.close() };
}

async function roundTrip(port: number): Promise<void> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  await c.write(new Uint8Array([1]));
  await c.read(new Uint8Array(1));
  c.close();
}

async function send(port: number): Promise<void> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  const chunk = new Uint8Array(1 << 20).fill(7);
  for (let sent = 0; sent < BYTES; sent += chunk.length) await c.write(chunk);
  c.close();
}

/** Runs the benchmark and prints its figures. */
export async function main(): Promise<void> {
  const s = server();
  const forwarder = new PortForwarder(new Logger({ write: () => {} }, "error"));
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const hostPort = (probe.addr as Deno.NetAddr).port;
  probe.close();
  await forwarder.open({ id: "bench", name: "bench", guestIp: "127.0.0.1" }, [
    { address: "127.0.0.1", hostPort, guestPort: s.port, proto: "tcp" },
  ]);
  try {
    heading("published port: the daemon's forwarder vs a direct connection (same run)");
    const directRtt = median(await timeRuns(200, () => roundTrip(s.port), 20));
    const viaRtt = median(await timeRuns(200, () => roundTrip(hostPort), 20));
    row("connect + 1-byte round trip, direct", ms(directRtt));
    row(
      "connect + 1-byte round trip, published",
      `${ms(viaRtt)} (${(viaRtt / directRtt).toFixed(2)}×)`,
    );
    const direct = median(await timeRuns(5, () => send(s.port), 1));
    const via = median(await timeRuns(5, () => send(hostPort), 1));
    const mibps = (t: number) => `${((BYTES / (1 << 20)) / (t / 1000)).toFixed(0)} MiB/s`;
    row("64 MiB one way, direct", mibps(direct));
    row(
      "64 MiB one way, published",
      `${mibps(via)} (${(direct / via).toFixed(2)}× the direct rate)`,
    );
  } finally {
    forwarder.closeAll();
    s.close();
  }
}

if (import.meta.main) await main();
