/**
 * kill(2) through libc, for the in-process adapter only (folder-private): `Deno.kill`
 * needs unscoped `--allow-run`, this needs `--allow-ffi`, which only the root helper and
 * the all-in-one development process have. The owner daemon signals VMMs through
 * `PrivilegedOps.signalVmm`.
 *
 * @module
 */

import { Errno, failure, lastErrno, libc } from "../os/libc.ts";
import { SIGNAL_NAMES, signalNumber } from "../os/process.ts";

/**
 * Sends `signal` to `pid`.
 *
 * @returns `false` when the process does not exist (ESRCH).
 * @throws {RangeError} for an unknown signal name or a pid below 2.
 * @throws {LibcError} for other failures (EPERM).
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
