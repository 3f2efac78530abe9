/**
 * Parses Firecracker's metrics file (`PUT /metrics`): one JSON object per line, written
 * every 60 s and on `FlushMetrics`. Pure.
 *
 * Firecracker's counters are deltas: each line holds what happened since the previous
 * line, so `vm stats` sums lines or divides by the interval; it never reads one line as
 * a running total.
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

/** One metrics line, with the block and net groups picked out. */
export interface FirecrackerMetrics {
  /** `utc_timestamp_ms`: when Firecracker wrote the line. */
  timestampMs: number;
  /** By group name: `block` (all drives) and `block_<drive_id>`. */
  block: Record<string, BlockMetrics>;
  /** By group name: `net` (all interfaces) and `net_<iface_id>`. */
  net: Record<string, NetMetrics>;
  /** The whole line as Firecracker wrote it. */
  raw: Record<string, unknown>;
}

/**
 * Returns the last complete line of a metrics file, parsed; a trailing partial line (a
 * write in progress) is skipped.
 *
 * @returns `undefined` when no complete line parses.
 * @example
 * ```ts
 * const m = parseFirecrackerMetrics(await Deno.readTextFile(`${vmDir}/metrics.json`));
 * m?.block["block_rootfs"]?.writeBytes;
 * ```
 */
export function parseFirecrackerMetrics(text: string): FirecrackerMetrics | undefined {
  const lines = text.split("\n");
  // Only lines followed by a newline are complete.
  for (let i = lines.length - 2; i >= 0; i--) {
    const raw = parseObject(lines[i].trim());
    if (raw && typeof raw.utc_timestamp_ms === "number") return summarize(raw);
  }
  return undefined;
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

function summarize(raw: Record<string, unknown>): FirecrackerMetrics {
  const block: Record<string, BlockMetrics> = {};
  const net: Record<string, NetMetrics> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== "object" || value === null) continue;
    const group = value as Record<string, unknown>;
    if (key === "block" || key.startsWith("block_")) {
      block[key] = {
        readBytes: num(group.read_bytes),
        writeBytes: num(group.write_bytes),
        readCount: num(group.read_count),
        writeCount: num(group.write_count),
        flushCount: num(group.flush_count),
      };
    } else if (key === "net" || key.startsWith("net_")) {
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
