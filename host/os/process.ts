/**
 * Processes as the owner daemon sees them: signal names, and `/proc/<pid>/…` read through
 * an injected reader (`PrivilegedOps.readProcFile`), because Deno's file APIs refuse
 * `/proc` and the owner daemon runs without `--allow-ffi`. Nothing here calls libc: the
 * in-process adapter's kill(2) is in `_signal.ts`, its `/proc` reads in `procfs.ts`.
 *
 * @module
 */

import { BangerError } from "../errors.ts";

// <asm-generic/signal.h> (x86_64)
const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
  SIGCONT: 18,
  SIGSTOP: 19,
};

/** The signal names banger sends (with or without the SIG prefix). */
export const SIGNAL_NAMES: readonly string[] = Object.keys(SIGNALS);

/** The number of a signal name such as `KILL` or `SIGTERM`; `undefined` when unknown. Pure. */
export function signalNumber(name: string): number | undefined {
  return SIGNALS[signalName(name) ?? ""];
}

/**
 * The canonical name (`SIGTERM`) of `KILL`, `sigterm`, `SIGTERM`…; `undefined` when it is
 * not one of {@linkcode SIGNAL_NAMES}. Pure.
 *
 * @example
 * ```ts
 * signalName("kill"); // "SIGKILL"
 * ```
 */
export function signalName(name: string): Deno.Signal | undefined {
  const upper = name.toUpperCase();
  const full = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  return full in SIGNALS ? full as Deno.Signal : undefined;
}

/** Reads `/proc` files: `PrivilegedOps.readProcFile` or anything shaped like it. */
export interface ProcReader {
  /** Reads one `/proc` file; rejects with code `not_found` when it does not exist. */
  readProcFile(args: { path: string }): Promise<string>;
}

/** The fields of `/proc/<pid>/stat` banger uses. */
export interface ProcStat {
  /** One letter: `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead)… */
  state: string;
  /** User-mode CPU time in clock ticks (`utime`). */
  utimeTicks: number;
  /** Kernel-mode CPU time in clock ticks (`stime`). */
  stimeTicks: number;
}

/**
 * Parses `/proc/<pid>/stat` (the command name may hold spaces and parentheses: fields
 * are counted from the last `)`). Pure.
 *
 * @returns `undefined` when the text is not a stat line.
 * @example
 * ```ts
 * parseProcStat("42 (qemu) S 1 42 42 0 -1 0 0 0 0 0 7 3 0 0").state; // "S"
 * ```
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  const fields = text.slice(close + 2).trim().split(" ");
  const state = fields[0] ?? "";
  if (!/^[A-Za-z]$/.test(state)) return undefined;
  return { state, utimeTicks: Number(fields[11]), stimeTicks: Number(fields[12]) };
}

/**
 * Reads `/proc/<pid>/<file>` through `procs`.
 *
 * @returns `undefined` when the process does not exist (any `not_found` answer).
 * @throws {BangerError} for every other failure (a helper that does not answer, a refused
 *   path): callers must not mistake "cannot tell" for "gone".
 * @example
 * ```ts
 * const cmdline = await readProcOf(ops, pid, "cmdline");
 * ```
 */
export async function readProcOf(
  procs: ProcReader,
  pid: number,
  file: "stat" | "status" | "cmdline",
): Promise<string | undefined> {
  try {
    return await procs.readProcFile({ path: `/proc/${pid}/${file}` });
  } catch (err) {
    if (err instanceof BangerError && err.code === "not_found") return undefined;
    throw err;
  }
}

/**
 * The argv of `pid` (empty for a zombie, `undefined` when there is no such process).
 *
 * @throws {BangerError} as {@linkcode readProcOf}.
 */
export async function processArgv(procs: ProcReader, pid: number): Promise<string[] | undefined> {
  const cmdline = await readProcOf(procs, pid, "cmdline");
  if (cmdline === undefined) return undefined;
  return cmdline === "" ? [] : cmdline.replace(/\0$/, "").split("\0");
}

/**
 * Whether `pid` exists and has not exited (a zombie counts as exited).
 *
 * @throws {BangerError} as {@linkcode readProcOf}.
 */
export async function processRunning(procs: ProcReader, pid: number): Promise<boolean> {
  const stat = await readProcOf(procs, pid, "stat");
  const state = stat === undefined ? undefined : parseProcStat(stat)?.state;
  return state !== undefined && state !== "Z" && state !== "X";
}
