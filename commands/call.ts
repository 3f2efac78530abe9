/**
 * Shared plumbing of the command groups: a daemon call with progress shown on stderr,
 * per-ref results of lifecycle verbs printed in the order given, JSON output, and the
 * flag parsers commands share.
 *
 * @module
 */

import type { MethodDef } from "../daemon/api/protocol.ts";
import type { BulkResult } from "../daemon/api/vm.ts";
import { parseSize } from "../daemon/api/size.ts";
import { UsageError } from "./command_line.ts";
import { callDaemon } from "./client/daemon_control.ts";
import type { CliEnv } from "./env.ts";
import { problem, ProgressPrinter } from "./output.ts";

/** Calls a daemon method, rendering its progress events on stderr. */
export async function callWithProgress<Req, Res>(
  env: CliEnv,
  def: MethodDef<Req, Res>,
  request: Req,
  options: { signal?: AbortSignal; quiet?: boolean } = {},
): Promise<Res> {
  const printer = new ProgressPrinter((t) => env.err(t), env.stderrIsTty, env.style);
  if (!options.quiet) printer.startTicking();
  let last = 0;
  try {
    return await callDaemon(env, def, request, {
      signal: options.signal,
      onProgress: options.quiet ? undefined : (e) => {
        last = e.elapsed_ms;
        printer.update(e);
      },
    });
  } finally {
    if (!options.quiet) printer.done(last);
  }
}

/**
 * Prints one line per ref (`verb name` or `error: …`) in the order given.
 *
 * @returns 0 when every ref succeeded, 1 otherwise.
 */
export function printBulk(env: CliEnv, result: BulkResult, verb: string, json: boolean): number {
  if (json) env.out(JSON.stringify(result, null, 2) + "\n");
  let failed = 0;
  for (const r of result.results) {
    if (r.ok) {
      if (!json) env.out(`${verb} ${r.vm?.name ?? r.ref}\n`);
    } else {
      failed++;
      problem(env, "error", `${r.ref}: ${r.error?.message ?? "failed"} (${result.op_id})`);
      if (r.error?.hint) problem(env, "hint", r.error.hint);
    }
  }
  return failed ? 1 : 0;
}

/** Parses `--memory`: a number of MiB, or a size such as "2G". */
export function parseMemoryFlag(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  const bytes = parseSize(text);
  if (bytes === undefined || bytes % (1024 * 1024) !== 0) {
    throw new UsageError(`Flag "--memory" must be MiB or a size like "2G", got "${text}"`);
  }
  return bytes / (1024 * 1024);
}

/** Prints `value` as pretty JSON. */
export function printJson(env: CliEnv, value: unknown): void {
  env.out(JSON.stringify(value, null, 2) + "\n");
}
