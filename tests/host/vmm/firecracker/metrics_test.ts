/** Parsing Firecracker's metrics JSON lines for `vm stats`. */

import { parseFirecrackerMetrics } from "../../../../host/vmm/firecracker/metrics.ts";
import { assertEquals } from "../../../fixtures/assert.ts";

const line = (ts: number, readBytes: number) =>
  JSON.stringify({
    utc_timestamp_ms: ts,
    block: { read_bytes: readBytes, write_bytes: 1, read_count: 2, write_count: 3, flush_count: 4 },
    block_rootfs: { read_bytes: readBytes },
    net_eth0: { rx_bytes_count: 10, tx_bytes_count: 20, rx_packets_count: 1, tx_packets_count: 2 },
    vmm: { panic_count: 0 },
  });

Deno.test("parseFirecrackerMetrics() sums the counters of every line (each is a delta since the last flush)", () => {
  const m = parseFirecrackerMetrics(`${line(1, 100)}\n${line(2, 200)}\n`);
  assertEquals(m?.timestampMs, 2);
  assertEquals(m?.block.block, {
    readBytes: 300,
    writeBytes: 2,
    readCount: 4,
    writeCount: 6,
    flushCount: 8,
  });
  assertEquals(m?.block.block_rootfs, {
    readBytes: 300,
    writeBytes: 0,
    readCount: 0,
    writeCount: 0,
    flushCount: 0,
  });
  assertEquals(m?.net.net_eth0, { rxBytes: 20, txBytes: 40, rxPackets: 2, txPackets: 4 });
  assertEquals((m?.raw.vmm as { panic_count: number }).panic_count, 0);
});

Deno.test("parseFirecrackerMetrics() skips a partial trailing line being written", () => {
  const text = `${line(1, 100)}\n${line(2, 200).slice(0, 30)}`;
  assertEquals(parseFirecrackerMetrics(text)?.timestampMs, 1);
});

Deno.test("parseFirecrackerMetrics() returns undefined for an empty or garbage file", () => {
  assertEquals(parseFirecrackerMetrics(""), undefined);
  assertEquals(parseFirecrackerMetrics("not json\n{}\n"), undefined);
});
