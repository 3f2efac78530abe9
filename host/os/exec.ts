/**
 * Runs host programs and turns failures into {@linkcode ExecError}s that keep the
 * program, exit status and the end of stderr.
 *
 * @module
 */

import { BangerError, ExecError } from "../errors.ts";

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

/** A program printed more than its caller can hold; it was killed. */
export class OutputTooLargeError extends BangerError {}

/** Bounds on what {@linkcode collectOutput} keeps. */
export interface OutputLimits {
  /** Past this many stdout bytes the program is killed and the call fails. */
  maxStdout: number;
  /** Only the last this many stderr bytes are kept. */
  maxStderrTail: number;
}

/** What {@linkcode collectOutput} keeps unless told otherwise: 1 GiB of stdout, 64 KiB of stderr. */
export const DEFAULT_OUTPUT_LIMITS: OutputLimits = { maxStdout: 1 << 30, maxStderrTail: 64 << 10 };

/**
 * Feeds `stdin` (when given; the child must have been spawned with `stdin: "piped"`)
 * while collecting the child's output (both spawned `"piped"`), so a large input cannot
 * deadlock against a full stdout pipe. A program that exits without reading everything
 * makes the feeding fail; its exit status is the error worth reporting, so that failure is
 * ignored. Output is bounded by `limits`: a program printing without end is killed, never
 * buffered whole.
 *
 * @throws {OutputTooLargeError} `too_large` when stdout passes `limits.maxStdout`.
 */
export async function collectOutput(
  child: Deno.ChildProcess,
  stdin?: StdinSource,
  limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
): Promise<Deno.CommandOutput> {
  let feeding = Promise.resolve();
  if (stdin !== undefined) {
    const stream = stdin instanceof ReadableStream
      ? stdin
      : ReadableStream.from([typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin]);
    feeding = stream.pipeTo(child.stdin).catch(() => {});
  }
  let tooLarge = false;
  const [stdout, stderr, status] = await Promise.all([
    drain(pipedOrNull(() => child.stdout), limits.maxStdout, "head", () => {
      tooLarge = true;
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }),
    drain(pipedOrNull(() => child.stderr), limits.maxStderrTail, "tail"),
    child.status,
  ]);
  await feeding;
  if (tooLarge) {
    throw new OutputTooLargeError(
      `The command printed more than ${limits.maxStdout} bytes; it was stopped`,
      { code: "too_large" },
    );
  }
  return { ...status, stdout, stderr };
}

/** A child's output stream, or `null` when it was not spawned `"piped"` (Deno throws then). */
function pipedOrNull(get: () => ReadableStream<Uint8Array>): ReadableStream<Uint8Array> | null {
  try {
    return get();
  } catch {
    return null;
  }
}

/**
 * Reads `stream` (nothing for `null`) to its end keeping at most `max` bytes: the first ones (`head`, calling
 * `onOverflow` and stopping once past it) or the last ones (`tail`).
 */
async function drain(
  stream: ReadableStream<Uint8Array> | null,
  max: number,
  keep: "head" | "tail",
  onOverflow?: () => void,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  let held = 0;
  for await (const chunk of stream ?? []) {
    if (keep === "head" && held + chunk.length > max) {
      onOverflow?.();
      break; // cancels the stream: a grandchild still writing gets EPIPE, not our memory
    }
    chunks.push(chunk);
    held += chunk.length;
    while (keep === "tail" && held - chunks[0].length >= max) held -= chunks.shift()?.length ?? 0;
  }
  const out = new Uint8Array(held);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return keep === "tail" && held > max ? out.slice(held - max) : out;
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
