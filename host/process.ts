/**
 * Signalling processes through kill(2). `Deno.kill` needs unscoped `--allow-run`; this
 * needs only `--allow-ffi`, which the host layer has anyway.
 *
 * @module
 */

import { Errno, failure, lastErrno, libc } from "./libc.ts";

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

/** The signal names {@linkcode signalProcess} accepts (with or without the SIG prefix). */
export const SIGNAL_NAMES: readonly string[] = Object.keys(SIGNALS);

/** The number of a signal name such as `KILL` or `SIGTERM`; `undefined` when unknown. */
export function signalNumber(name: string): number | undefined {
  const upper = name.toUpperCase();
  return SIGNALS[upper.startsWith("SIG") ? upper : `SIG${upper}`];
}

/**
 * Sends `signal` to `pid`.
 *
 * @returns `false` when the process does not exist (ESRCH).
 * @throws {RangeError} for an unknown signal name.
 * @throws {LibcError} for other failures (EPERM).
 * @example
 * ```ts
 * signalProcess(vmmPid, "SIGKILL");
 * ```
 */
export function signalProcess(pid: number, signal: string): boolean {
  const n = signalNumber(signal);
  if (n === undefined) {
    throw new RangeError(`Cannot send signal "${signal}": use one of ${SIGNAL_NAMES.join(", ")}`);
  }
  if (!Number.isInteger(pid) || pid <= 1) throw new RangeError(`Cannot signal pid ${pid}`);
  if (libc().kill(pid, n) === 0) return true;
  const errno = lastErrno();
  if (errno === Errno.ESRCH) return false;
  throw failure(`send ${signal} to`, `pid ${pid}`, errno);
}

/** Whether a process with this pid exists (kill(pid, 0); EPERM still means it exists). */
export function processExists(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  if (libc().kill(pid, 0) === 0) return true;
  return lastErrno() !== Errno.ESRCH;
}
