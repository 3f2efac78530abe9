/**
 * One interface over the two VMMs banger boots guests with. Firecracker is configured
 * over its API socket; QEMU (microvm) gets the same VM spec on its command line. Both
 * run detached in their own session, so neither a CLI nor a daemon restart kills a guest.
 *
 * @module
 */

import { BangerError } from "../../host/errors.ts";
import { parseProcStat, type ProcReader, SIGNAL_NAMES, signalName } from "../../host/os/process.ts";

/** Everything a VMM needs to boot one guest. Paths are absolute. */
export interface VmmLaunch {
  vmId: string;
  vmDir: string;
  vcpu: number;
  memoryMib: number;
  kernel: string;
  initrd?: string;
  /** Kernel `init=`, for images that boot through banger's first-boot script. */
  init?: string;
  rootDisk: string;
  workDisk: string;
  tap: string;
  /** Guest address as a number (the MAC is derived from it). */
  guestIp: number;
  vsockCid: number;
  signal?: AbortSignal;
}

/** Process figures and VMM metrics for `vm stats`. */
export interface VmmStats {
  cpuSeconds?: number;
  rssBytes?: number;
  metrics?: unknown;
}

/** A VMM implementation. Every method is safe to call for a VMM adopted after a restart. */
export interface VmmDriver {
  /** `firecracker` or `qemu`. */
  readonly kind: "firecracker" | "qemu";
  /** Whether guests get a vsock device the host can reach. */
  readonly hasVsock: boolean;
  /** Starts the VMM and boots the guest; returns the VMM's pid. */
  launch(spec: VmmLaunch): Promise<number>;
  /**
   * The pid of a live VMM of `vmDir` from the VMM's own pid file — for a VMM whose pid
   * never reached handles.json (the daemon died between launch and recording it).
   */
  findPid(vmDir: string): Promise<number | undefined>;
  /** Whether `pid` is alive and is this VM's VMM (never a reused pid). */
  alive(pid: number, vmDir: string): Promise<boolean>;
  /**
   * Waits up to `exitWaitMs` for a VMM whose guest was asked to reboot to exit; then nudges it
   * (Ctrl+Alt+Del for Firecracker, the monitor for QEMU); then SIGKILL.
   *
   * @returns how it ended, e.g. `exit`, `ctrl-alt-del`, `sigkill`.
   */
  stop(
    pid: number,
    vmDir: string,
    o: { exitWaitMs: number; signal?: AbortSignal },
  ): Promise<string>;
  /** Sends `signal` to the VMM; `false` when it was not running. */
  kill(pid: number, vmDir: string, signal: string): Promise<boolean>;
  /** Waits up to `timeoutMs` for the VMM to exit; whether it did. */
  waitExit(pid: number, vmDir: string, timeoutMs: number): Promise<boolean>;
  /** Removes sockets and pid files of a VMM that is gone. */
  cleanup(vmDir: string): Promise<void>;
  /** Figures for `vm stats`. */
  stats(pid: number, vmDir: string): Promise<VmmStats>;
}

/**
 * CPU seconds and RSS of a process, from `/proc/<pid>/stat` and `status` read through
 * `procs` (`PrivilegedOps.readProcFile`: the daemon cannot read `/proc` itself). Empty
 * when the process is gone or `/proc` cannot be read.
 */
export async function processStats(pid: number, procs: ProcReader): Promise<VmmStats> {
  try {
    const stat = parseProcStat(await procs.readProcFile({ path: `/proc/${pid}/stat` }));
    const ticks = (stat?.utimeTicks ?? NaN) + (stat?.stimeTicks ?? NaN);
    const status = await procs.readProcFile({ path: `/proc/${pid}/status` });
    const rssKib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    return {
      cpuSeconds: Number.isFinite(ticks) ? ticks / 100 : undefined,
      rssBytes: Number.isFinite(rssKib) ? rssKib * 1024 : undefined,
    };
  } catch {
    return {};
  }
}

/**
 * The canonical name of a signal given to `VmmDriver.kill`.
 *
 * @throws {BangerError} `invalid_argument` for an unknown name.
 */
export function vmmSignal(signal: string): Deno.Signal {
  const name = signalName(signal);
  if (name) return name;
  throw new BangerError(
    `Cannot send signal "${signal}" to a VMM: use one of ${SIGNAL_NAMES.join(", ")}`,
    { code: "invalid_argument" },
  );
}
