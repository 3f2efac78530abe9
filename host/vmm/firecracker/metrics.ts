/**
 * Parses Firecracker's metrics file (`PUT /metrics`): one JSON object per line, written
 * every 60 s and on `FlushMetrics`. Pure.
 *
 * Firecracker's counters are deltas: each line holds what happened since the previous
 * line (a flush resets them), so the block and net counters returned are the sums over
 * every line — totals since the launch, which starts the file empty — never one line
 * read as a running total.
 *
 * @module
 */

/** Block device counters of one line. */
export interface BlockMetrics {
  readBytes: number;
  writeBytes: number;
  readCount: number;
  writeCount: number;
  flushCount: number;
}

/** Network interface counters of one line. */
export interface NetMetrics {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

/** The block and net totals of a metrics file, and its last line. */
export interface FirecrackerMetrics {
  /** `utc_timestamp_ms` of the last line: when Firecracker last flushed. */
  timestampMs: number;
  /** Totals by group name: `block` (all drives) and `block_<drive_id>`. */
  block: Record<string, BlockMetrics>;
  /** Totals by group name: `net` (all interfaces) and `net_<iface_id>`. */
  net: Record<string, NetMetrics>;
  /** The last line as Firecracker wrote it. */
  raw: Record<string, unknown>;
}

/**
 * Sums the block and net counters of every complete line of a metrics file; a trailing
 * partial line (a write in progress) is skipped.
 *
 * @returns `undefined` when no complete line parses.
 * @example
 * ```ts
 * const m = parseFirecrackerMetrics(await Deno.readTextFile(`${vmDir}/metrics.json`));
 * m?.block["block_rootfs"]?.writeBytes;
 * ```
 */
export function parseFirecrackerMetrics(text: string): FirecrackerMetrics | undefined {
  const sums: Record<string, Record<string, number>> = {};
  let last: Record<string, unknown> | undefined;
  // Only lines followed by a newline are complete.
  for (const line of text.split("\n").slice(0, -1)) {
    const raw = parseObject(line.trim());
    if (!raw || typeof raw.utc_timestamp_ms !== "number") continue;
    last = raw;
    for (const [key, group] of Object.entries(raw)) {
      if (!isCounterGroup(key) || typeof group !== "object" || group === null) continue;
      const sum = sums[key] ??= {};
      for (const [name, n] of Object.entries(group)) sum[name] = (sum[name] ?? 0) + num(n);
    }
  }
  return last && summarize(last, sums);
}

function isCounterGroup(key: string): boolean {
  return key === "block" || key.startsWith("block_") || key === "net" || key.startsWith("net_");
}

function parseObject(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === "object" && v !== null && !Array.isArray(v)
      ? v as Record<string, unknown>
      : undefined;
  } catch {
    return undefined;
  }
}

function summarize(
  raw: Record<string, unknown>,
  sums: Record<string, Record<string, number>>,
): FirecrackerMetrics {
  const block: Record<string, BlockMetrics> = {};
  const net: Record<string, NetMetrics> = {};
  for (const [key, group] of Object.entries(sums)) {
    if (key.startsWith("block")) {
      block[key] = {
        readBytes: num(group.read_bytes),
        writeBytes: num(group.write_bytes),
        readCount: num(group.read_count),
        writeCount: num(group.write_count),
        flushCount: num(group.flush_count),
      };
    } else {
      net[key] = {
        rxBytes: num(group.rx_bytes_count),
        txBytes: num(group.tx_bytes_count),
        rxPackets: num(group.rx_packets_count),
        txPackets: num(group.tx_packets_count),
      };
    }
  }
  return { timestampMs: num(raw.utc_timestamp_ms), block, net, raw };
}

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}
