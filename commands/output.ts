/**
 * What the CLI writes to the terminal: aligned tables, key/value blocks, durations, the
 * progress line of long operations (a bar with bytes, rate and ETA, or a ticking elapsed
 * time, on a TTY; plain lines otherwise), coloured problem labels, and the question a
 * destructive command asks.
 *
 * @module
 */

import type { ProgressEvent } from "../daemon/api/protocol.ts";
import { formatSize } from "../daemon/api/size.ts";
import { type CliEnv, CliError, ExitCode, type TerminalStyle } from "./env.ts";

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

const ANSI = { green: "32", red: "31", yellow: "33", dim: "2" } as const;

/** `text` in an ANSI colour when `on`, else as it is. Pure. */
export function paint(text: string, colour: keyof typeof ANSI, on: boolean | undefined): string {
  return on ? `\x1b[${ANSI[colour]}m${text}\x1b[0m` : text;
}

/** Writes `error: …`, `warning: …` or `hint: …` to stderr, the label coloured on a TTY. */
export function problem(
  env: { err(text: string): void; style: TerminalStyle },
  kind: "error" | "warning" | "hint",
  text: string,
): void {
  const colour = kind === "error" ? "red" : kind === "warning" ? "yellow" : "dim";
  env.err(`${paint(`${kind}:`, colour, env.style.color)} ${text}\n`);
}

/** `text` cut to `columns - 1` characters (the last column would wrap), with `…`. Pure. */
export function fitWidth(text: string, columns: number | undefined): string {
  const chars = [...text];
  if (columns === undefined || columns < 10 || chars.length < columns) return text;
  return chars.slice(0, columns - 2).join("") + "…";
}

/** How often a stage without a byte total redraws its elapsed time. */
export const TICK_MS = 1000;

/**
 * Turns a stream of progress events into terminal output. On a TTY the current stage is
 * redrawn in place — with a byte bar when totals are known, else with its elapsed time,
 * which {@linkcode tick} advances between events (a debootstrap or kernel build is
 * silent for minutes) — cut to the terminal's width, and each finished stage is kept
 * with its duration; otherwise each stage change prints one plain line.
 */
export class ProgressPrinter {
  #stage?: string;
  #stageStart = 0;
  #stageWall = 0;
  #event?: ProgressEvent;
  #last = "";
  #rateFrom?: { at: number; done: number };
  #timer?: ReturnType<typeof setInterval>;

  constructor(
    private readonly write: (text: string) => void,
    private readonly tty: boolean,
    private readonly style: TerminalStyle = {},
    private readonly now: () => number = Date.now,
  ) {}

  /** Feeds one event. */
  update(e: ProgressEvent): void {
    if (e.stage !== this.#stage) {
      this.#finishStage(e.elapsed_ms);
      this.#stage = e.stage;
      this.#stageStart = e.elapsed_ms;
      this.#stageWall = this.now();
      this.#rateFrom = undefined;
      if (!this.tty) this.write(`${e.message}\n`);
    }
    this.#event = e;
    if (!this.tty) return;
    this.#draw(e.total !== undefined ? " " + renderBar(e, this.#rate(e)) : this.#elapsed());
  }

  /** Redraws a stage without byte totals with its elapsed time (a timer calls it). */
  tick(): void {
    if (this.tty && this.#event && this.#event.total === undefined) this.#draw(this.#elapsed());
  }

  /** Starts calling {@linkcode tick} every second, never keeping the process alive. */
  startTicking(): void {
    if (!this.tty || this.#timer !== undefined) return;
    const timer = setInterval(() => this.tick(), TICK_MS);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Closes the last stage (call once the operation finished). */
  done(totalMs?: number): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#finishStage(totalMs);
    this.#stage = undefined;
  }

  #elapsed(): string {
    const ms = this.now() - this.#stageWall;
    return ms >= TICK_MS ? ` (${formatDuration(ms)})` : "";
  }

  #draw(suffix: string): void {
    const line = fitWidth(`  … ${this.#event?.message ?? ""}${suffix}`, this.style.columns);
    if (line === this.#last) return;
    this.write(`\r\x1b[2K${line}`);
    this.#last = line;
  }

  #finishStage(now?: number): void {
    if (this.#stage === undefined || !this.tty) return;
    const took = now !== undefined ? formatDuration(now - this.#stageStart) : "";
    const message = this.#event?.message ?? "";
    const line = fitWidth(`  ✓ ${message} ${took}`, this.style.columns);
    this.write(`\r\x1b[2K${line.replace("✓", paint("✓", "green", this.style.color))}\n`);
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

// Questions, as Docker and gh ask them: on stderr, answered on a terminal only. With no
// terminal to ask on, a destructive command refuses unless `-f`, so a script never
// destroys by accident, nor hangs on a prompt.

/**
 * Returns when the user agreed to `question` (or `force` is set); otherwise ends the
 * command with exit code 1.
 *
 * @example
 * ```ts
 * await confirm(env, "This deletes dev and web.", f.bool("force"));
 * ```
 * @throws {CliError} when stdin is not a terminal and `force` is not set.
 * @throws {ExitCode} 1 when the user did not answer yes.
 */
export async function confirm(env: CliEnv, question: string, force: boolean): Promise<void> {
  if (force) return;
  if (!env.stdinIsTty) {
    throw new CliError(`${question} Refusing without a terminal to confirm on`, {
      hint: "pass -f to go ahead without asking",
    });
  }
  if (await ask(env, question)) return;
  env.err("aborted: nothing was changed\n");
  throw new ExitCode(1);
}

/** Asks `question` on stderr and reads the answer; only `y`/`yes` is yes. Needs a TTY. */
export async function ask(env: CliEnv, question: string): Promise<boolean> {
  env.err(`${question} Continue? [y/N] `);
  return /^\s*y(es)?\s*$/i.test((await env.readLine()) ?? "");
}
