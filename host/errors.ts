/**
 * The error base every banger module extends, and the error kept when a program fails.
 *
 * @module
 */

/**
 * Stable, machine-readable error codes. The RPC layer maps each to one HTTP status
 * (`daemon/rpc_errors.ts`); the CLI prints the message, never the code.
 */
export type ErrorCode =
  | "invalid_argument"
  | "not_found"
  | "conflict"
  | "failed_precondition"
  | "permission_denied"
  | "too_large"
  | "unavailable"
  | "cancelled"
  | "timeout"
  | "internal";

/** Options shared by every {@linkcode BangerError}. */
export interface BangerErrorOptions {
  /** What kind of failure this is. @default {"internal"} */
  code?: ErrorCode;
  /** One line telling the user what to do next. */
  hint?: string;
  /** The lower-level error this one explains. */
  cause?: unknown;
}

/**
 * Base of every error banger raises on purpose: a message a user can act on, a stable
 * {@linkcode ErrorCode} and an optional hint.
 *
 * @example
 * ```ts
 * throw new BangerError('Cannot find VM "dev"', { code: "not_found", hint: "banger vm list" });
 * ```
 */
export class BangerError extends Error {
  /** The kind of failure, mapped to an HTTP status at the RPC boundary. */
  readonly code: ErrorCode;
  /** One line telling the user what to do next, when there is one. */
  readonly hint?: string;

  constructor(message: string, options: BangerErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? "internal";
    this.hint = options.hint;
  }
}

/** Details of a finished or aborted subprocess, kept by {@linkcode ExecError}. */
export interface ExecFailure {
  /** The program that ran. */
  program: string;
  /** Its arguments. */
  args: readonly string[];
  /** Exit code, or `null` when killed by a signal or never started. */
  exitCode: number | null;
  /** Signal that ended it, if any. */
  signal: string | null;
  /** Whether it was stopped because a timeout elapsed. */
  timedOut: boolean;
  /** Whether it was stopped because the caller aborted. */
  aborted: boolean;
  /** The last lines of its standard error. */
  stderrTail: string;
}

/**
 * A subprocess that failed: the message is built from the program, exit status and the
 * end of its stderr so the user sees why.
 */
export class ExecError extends BangerError {
  /** Everything known about the failed run. */
  readonly failure: ExecFailure;

  constructor(failure: ExecFailure, options: BangerErrorOptions = {}) {
    super(describeFailure(failure), {
      code: failure.aborted ? "cancelled" : failure.timedOut ? "timeout" : options.code,
      ...options,
    });
    this.failure = failure;
  }
}

function describeFailure(f: ExecFailure): string {
  const status = f.aborted
    ? "was cancelled"
    : f.timedOut
    ? "timed out"
    : f.exitCode === null
    ? f.signal ? `was killed by ${f.signal}` : "could not start"
    : `exited with code ${f.exitCode}`;
  const tail = f.stderrTail.trim();
  return `Command "${f.program}" ${status}${tail ? `: ${tail}` : ""}`;
}

/** Turns anything thrown into a message fit for a log line or the CLI. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * Joins several failures into one {@linkcode BangerError} whose message lists each, for
 * teardown code that keeps going after a step fails (DESIGN.md invariant 7).
 *
 * @returns `undefined` when there were no errors.
 */
export function aggregateErrors(what: string, errors: unknown[]): BangerError | undefined {
  if (errors.length === 0) return undefined;
  if (errors.length === 1 && errors[0] instanceof BangerError) {
    const only = errors[0];
    return new BangerError(`${what}: ${only.message}`, {
      code: only.code,
      hint: only.hint,
      cause: only,
    });
  }
  const lines = errors.map((e) => errorMessage(e)).join("; ");
  return new BangerError(`${what}: ${lines}`, { cause: new AggregateError(errors) });
}
