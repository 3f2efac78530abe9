/**
 * Pure renderers for CLI output: aligned tables, key/value blocks, durations, and the
 * progress line of long operations (a bar with bytes, rate and ETA on a TTY; plain
 * lines otherwise).
 *
 * @module
 */

import type { ProgressEvent } from "../daemon/api/protocol.ts";
import { formatSize } from "../daemon/api/size.ts";

/** Renders rows under headers, columns padded to the widest cell. */
export function renderTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

/** Renders `key: value` pairs with aligned values. */
export function renderFields(fields: readonly (readonly [string, string])[]): string {
  const w = Math.max(...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${(k + ":").padEnd(w + 1)} ${v}`).join("\n") + "\n";
}

/** "1.2s", "340ms", "3m05s". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  const sec = Math.round((ms % 60_000) / 1000);
  if (m < 60) return `${m}m${String(sec).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

/** "3 days", "5m" style age of a timestamp relative to `now`. */
export function formatAge(iso: string, now: number): string {
  const ms = Math.max(0, now - Date.parse(iso));
  if (ms < 60_000) return `${Math.floor(ms / 1000)}s ago`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m ago`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)}h ago`;
  return `${Math.floor(ms / 86_400_000)}d ago`;
}

/**
 * Turns a stream of progress events into terminal output. On a TTY the current stage is
 * redrawn in place (with a byte bar when totals are known) and each finished stage is
 * kept with its duration; otherwise each stage change prints one plain line.
 */
export class ProgressPrinter {
  #stage?: string;
  #stageStart = 0;
  #last = "";
  #rateFrom?: { at: number; done: number };

  constructor(private readonly write: (text: string) => void, private readonly tty: boolean) {}

  /** Feeds one event. */
  update(e: ProgressEvent): void {
    if (e.stage !== this.#stage) {
      this.#finishStage(e.elapsed_ms);
      this.#stage = e.stage;
      this.#stageStart = e.elapsed_ms;
      this.#rateFrom = undefined;
      if (!this.tty) this.write(`${e.message}\n`);
    }
    if (!this.tty) return;
    const line = `  … ${e.message}${
      e.total !== undefined ? " " + renderBar(e, this.#rate(e)) : ""
    }`;
    if (line !== this.#last) {
      this.write(`\r\x1b[2K${line}`);
      this.#last = line;
    }
  }

  /** Closes the last stage (call once the operation finished). */
  done(totalMs?: number): void {
    this.#finishStage(totalMs);
    this.#stage = undefined;
  }

  #finishStage(now?: number): void {
    if (this.#stage === undefined || !this.tty) return;
    const took = now !== undefined ? formatDuration(now - this.#stageStart) : "";
    this.write(`\r\x1b[2K  ✓ ${this.#last.replace(/^ {2}… /, "").replace(/ \[.*$/, "")} ${took}\n`);
    this.#last = "";
  }

  #rate(e: ProgressEvent): number | undefined {
    if (e.done === undefined) return undefined;
    if (!this.#rateFrom) {
      this.#rateFrom = { at: e.elapsed_ms, done: e.done };
      return undefined;
    }
    const dt = (e.elapsed_ms - this.#rateFrom.at) / 1000;
    return dt > 0.2 ? (e.done - this.#rateFrom.done) / dt : undefined;
  }
}

/** `[#####-----] 12.0 MiB / 30.0 MiB  4.1 MiB/s  ETA 5s` */
export function renderBar(e: { done?: number; total?: number }, rate?: number): string {
  const done = e.done ?? 0;
  const total = e.total ?? 0;
  const width = 20;
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const filled = Math.round(frac * width);
  const parts = [
    `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`,
    `${formatSize(done)} / ${formatSize(total)}`,
  ];
  if (rate !== undefined && rate > 0) {
    parts.push(`${formatSize(Math.round(rate))}/s`);
    parts.push(`ETA ${formatDuration(((total - done) / rate) * 1000)}`);
  }
  return parts.join("  ");
}
