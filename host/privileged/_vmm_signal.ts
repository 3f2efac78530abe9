/**
 * `PrivilegedOps.signalVmm` for the in-process adapter (folder-private). The root helper
 * signals on the owner's behalf, so it signals only what is verifiably a VMM of one of
 * banger's VM directories: the process's command line must name a file directly inside
 * `vmDir` (Firecracker's `--api-sock <vmDir>/fc.sock`, QEMU's `-pidfile <vmDir>/vmm.pid`),
 * `vmDir` must lie inside banger's directories, and with an owner the process must run as
 * the owner. A pid recycled between the check and kill(2) is the remaining (microseconds
 * wide) race; a pidfd would close it.
 *
 * @module
 */

import { signalProcess } from "./_signal.ts";
import { canonicalPath, type ManagedPaths } from "./managed_paths.ts";
import { type OpArgs, PrivilegedOpsError } from "./privileged_ops.ts";
import { parseProcStat, signalName } from "../os/process.ts";
import { readProcFileIfExists } from "../os/procfs.ts";

/**
 * Checks and sends the signal.
 *
 * @returns `false` when the process is gone or a zombie.
 * @throws {PrivilegedOpsError} `permission_denied` for a process that is not a VMM of
 *   `vmDir` (or not the owner's); `ManagedPathError` for a `vmDir` outside banger's dirs.
 */
export function signalVmmProcess(
  args: OpArgs<"signalVmm">,
  guard: { paths: ManagedPaths; ownerUid?: number },
): boolean {
  const { pid, vmDir } = args;
  const signal = signalName(args.signal) ?? args.signal;
  guard.paths.checkLexical(vmDir, "VM directory");
  const stat = readProcFileIfExists(`/proc/${pid}/stat`);
  const state = stat === undefined ? undefined : parseProcStat(stat)?.state;
  if (state === undefined || state === "Z" || state === "X") return false;
  const argv = (readProcFileIfExists(`/proc/${pid}/cmdline`) ?? "").split("\0");
  const refuse = (why: string) =>
    new PrivilegedOpsError(`Cannot send ${signal} to pid ${pid}: ${why}`, {
      code: "permission_denied",
    });
  if (!namesFileIn(argv, vmDir)) throw refuse(`it is not a VMM of "${vmDir}"`);
  if (guard.ownerUid !== undefined) {
    const status = readProcFileIfExists(`/proc/${pid}/status`) ?? "";
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    if (uid !== guard.ownerUid) {
      throw refuse(`it runs as uid ${uid}, not as the owner (uid ${guard.ownerUid})`);
    }
  }
  return signalProcess(pid, signal);
}

/** Whether an argument (or a `--flag=` value) is a file directly inside `dir`. Pure. */
export function namesFileIn(argv: readonly string[], dir: string): boolean {
  return argv.some((arg) => {
    const value = arg.replace(/^--?[A-Za-z][A-Za-z0-9-]*=/, "");
    if (canonicalPath(value) !== value || !value.startsWith(`${dir}/`)) return false;
    return !value.slice(dir.length + 1).includes("/");
  });
}
