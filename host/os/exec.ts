/**
 * Runs host programs and turns failures into {@linkcode ExecError}s that keep the
 * program, exit status and the end of stderr.
 *
 * @module
 */

import { ExecError } from "../errors.ts";

/** Options for {@linkcode run}. */
export interface RunOptions {
  /** Bytes or text written to the program's stdin, then closed. */
  stdin?: Uint8Array | string;
  /** Stops the program (SIGKILL) when aborted. */
  signal?: AbortSignal;
  /** Kills the program after this many milliseconds. @default {undefined} (no limit) */
  timeoutMs?: number;
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Treat these exit codes as success too. @default {[0]} */
  okCodes?: number[];
}

/** What a finished program produced. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Captured standard output. */
  stdout: Uint8Array;
  /** Captured standard error, decoded. */
  stderr: string;
}

const STDERR_TAIL_LINES = 8;

/** What a program reads on stdin: bytes, text, or a stream (never buffered whole). */
export type StdinSource = Uint8Array | string | ReadableStream<Uint8Array>;

/**
 * Feeds `stdin` (when given; the child must have been spawned with `stdin: "piped"`)
 * while collecting the child's output, so a large input cannot deadlock against a full
 * stdout pipe. A program that exits without reading everything makes the feeding fail;
 * its exit status is the error worth reporting, so that failure is ignored.
 */
export async function collectOutput(
  child: Deno.ChildProcess,
  stdin?: StdinSource,
): Promise<Deno.CommandOutput> {
  let feeding = Promise.resolve();
  if (stdin !== undefined) {
    const stream = stdin instanceof ReadableStream
      ? stdin
      : ReadableStream.from([typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin]);
    feeding = stream.pipeTo(child.stdin).catch(() => {});
  }
  const out = await child.output();
  await feeding;
  return out;
}

/**
 * Runs `program` to completion and captures its output.
 *
 * @throws {ExecError} when it cannot start, exits with a code outside `okCodes`, times
 * out or is aborted.
 * @example
 * ```ts
 * const { stdout } = await run("ip", ["-j", "link", "show"]);
 * ```
 */
export async function run(
  program: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const signals: AbortSignal[] = [];
  if (options.signal) signals.push(options.signal);
  const timeout = options.timeoutMs !== undefined
    ? AbortSignal.timeout(options.timeoutMs)
    : undefined;
  if (timeout) signals.push(timeout);
  const signal = signals.length > 0 ? AbortSignal.any(signals) : undefined;
  const failure = (exitCode: number | null, sig: string | null, stderr: string) =>
    new ExecError({
      program,
      args,
      exitCode,
      signal: sig,
      timedOut: timeout?.aborted ?? false,
      aborted: options.signal?.aborted ?? false,
      stderrTail: tail(stderr),
    });

  if (signal?.aborted) throw failure(null, null, "");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args: [...args],
      cwd: options.cwd,
      env: options.env,
      stdin: options.stdin !== undefined ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      signal,
    }).spawn();
  } catch (err) {
    throw failure(null, null, err instanceof Error ? err.message : String(err));
  }
  const out = await collectOutput(child, options.stdin);
  const stderr = new TextDecoder().decode(out.stderr);
  const ok = options.okCodes ?? [0];
  if (signal?.aborted || out.signal !== null || !ok.includes(out.code)) {
    throw failure(out.signal === null ? out.code : null, out.signal, stderr);
  }
  return { code: out.code, stdout: out.stdout, stderr };
}

/** {@linkcode run} and decode stdout as UTF-8 text. */
export async function runText(
  program: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const { stdout } = await run(program, args, options);
  return new TextDecoder().decode(stdout);
}

/** Whether `program` can be found on PATH (or is an existing executable path). */
export async function hasProgram(program: string): Promise<boolean> {
  return (await whichProgram(program)) !== undefined;
}

/** Resolves `program` against PATH, like `command -v`. */
export async function whichProgram(program: string): Promise<string | undefined> {
  const candidates = program.includes("/")
    ? [program]
    : (Deno.env.get("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
      .split(":").filter((d) => d !== "").map((d) => `${d}/${program}`);
  for (const candidate of candidates) {
    try {
      const info = await Deno.stat(candidate);
      if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

function tail(text: string): string {
  const lines = text.trimEnd().split("\n");
  return lines.slice(-STDERR_TAIL_LINES).join("\n");
}
