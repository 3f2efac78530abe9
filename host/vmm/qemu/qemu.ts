/**
 * Runs a banger guest under QEMU's `microvm` machine, the VMM used where Firecracker is
 * missing (no KVM, or no firecracker binary). The guest sees what Firecracker gives it:
 * virtio-mmio block devices (`/dev/vda` root, `/dev/vdb` work disk), a virtio-mmio NIC on
 * a tap, optionally a vsock device, and a serial console.
 *
 * Two layers: {@linkcode renderQemuArgv} is a pure renderer (tests pin its exact output);
 * {@linkcode launchQemu} starts it as a child in its own session (so it outlives the
 * caller, like Firecracker) whose stderr goes to a log file, and waits until its QMP
 * socket answers — or reports QEMU's own error when it exits first. Staying the caller's
 * child (no `-daemonize`) means the caller reaps it: a daemonized QEMU is reparented to
 * PID 1, and not every PID 1 reaps.
 * `-no-reboot` makes a guest `reboot` end QEMU, the way `reboot=k` ends Firecracker.
 * {@linkcode QemuProcess.stop} sends `quit` on the QMP monitor socket (falling back to
 * SIGTERM/SIGKILL), then waits for the process to be gone. QMP, not the human monitor:
 * its JSON replies can be parsed, while HMP echoes input with terminal escapes.
 *
 * Accelerator: `-accel kvm -cpu host` only when KVM can run a standard guest
 * (`host/vmm/kvm.ts`: a nested PVM `/dev/kvm` cannot), else `-accel tcg -cpu max`. Under TCG
 * the kernel needs `tsc_early_khz` (`host/vmm/kernel_cmdline.ts`).
 *
 * @module
 */

import { readTail } from "../../os/log_file.ts";
import { pause, qmpExchange } from "./_qmp.ts";
import { type QemuVmSpec, specProblem } from "./_spec.ts";
import { BangerError } from "../../errors.ts";
import type { VmmProcessOps } from "../../privileged/privileged_ops.ts";
import { processRunning } from "../../os/process.ts";

export type { QemuVmSpec };

/** QEMU could not be started, reached or stopped. */
export class QemuError extends BangerError {}

/**
 * QEMU's argv (without the program) for `spec`. Pure.
 *
 * @throws {QemuError} for a relative path, a path with a comma or control character
 *   (QEMU option syntax), a socket path over 107 bytes, a bad tap name or MAC, a CID
 *   below 3, or non-positive CPU or memory.
 * @example
 * ```ts
 * const argv = renderQemuArgv({ accel: "tcg", vcpus: 2, memoryMib: 1024, ... });
 * // ["-M", "microvm", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024", ...]
 * ```
 */
export function renderQemuArgv(spec: QemuVmSpec): string[] {
  const problem = specProblem(spec);
  if (problem) {
    throw new QemuError(`Cannot build the QEMU command line: ${problem}`, {
      code: "invalid_argument",
    });
  }
  const argv = [
    ...["-M", "microvm", "-accel", spec.accel, "-cpu", spec.accel === "kvm" ? "host" : "max"],
    ...["-smp", String(spec.vcpus), "-m", String(spec.memoryMib)],
    ...["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"],
    ...["-chardev", `file,id=serial0,path=${spec.serialLogPath},append=on`],
    ...["-serial", "chardev:serial0"],
    ...["-qmp", `unix:${spec.monitorSocketPath},server=on,wait=off`],
    ...["-pidfile", spec.pidFilePath],
    ...["-kernel", spec.kernelPath, "-initrd", spec.initrdPath, "-append", spec.cmdline],
    ...drive("root", spec.rootDiskPath),
  ];
  if (spec.workDiskPath) argv.push(...drive("work", spec.workDiskPath));
  if (spec.tap) {
    argv.push(
      ...["-netdev", `tap,id=net0,ifname=${spec.tap.name},script=no,downscript=no`],
      ...["-device", `virtio-net-device,netdev=net0,mac=${spec.tap.mac}`],
    );
  }
  if (spec.vsockCid !== undefined) {
    argv.push("-device", `vhost-vsock-device,guest-cid=${spec.vsockCid}`);
  }
  return argv;
}

/** Devices are attached in argv order: root first so it is `/dev/vda`. */
function drive(id: string, path: string): string[] {
  return [
    ...["-drive", `id=${id},file=${path},format=raw,if=none,cache=writeback,discard=unmap`],
    ...["-device", `virtio-blk-device,drive=${id}`],
  ];
}

/** Options for {@linkcode launchQemu}. */
export interface LaunchQemuOptions {
  /** The QEMU program. @default {"qemu-system-x86_64"} */
  binary?: string;
  /** Run inside this network namespace (`ip netns exec`), for tests. */
  netns?: string;
  /** Gives up on startup when aborted. */
  signal?: AbortSignal;
  /** How long QEMU may take to start. @default {30000} */
  timeoutMs?: number;
  /**
   * Start paused, waiting for a saved state (`-S -incoming defer`): restore it with
   * `restoreQemuState` (`host/vmm/qemu/snapshot.ts`), then QMP `cont`.
   */
  incoming?: boolean;
}

/**
 * Starts QEMU detached (own session, reparented away from the caller) and returns a
 * handle once it is running and its pid file is written.
 *
 * @throws {QemuError} when QEMU refuses the configuration or fails to start; the message
 *   carries QEMU's own error (e.g. a missing disk or tap).
 * @example
 * ```ts
 * await using vm = await launchQemu(spec);
 * // ... ssh into the guest ...
 * await vm.stop();
 * ```
 */
export async function launchQemu(
  spec: QemuVmSpec,
  options: LaunchQemuOptions = {},
): Promise<QemuProcess> {
  const argv = [...renderQemuArgv(spec), ...(options.incoming ? ["-S", "-incoming", "defer"] : [])];
  const binary = options.binary ?? "qemu-system-x86_64";
  const logPath = `${spec.pidFilePath.slice(0, spec.pidFilePath.lastIndexOf("/"))}/vmm.log`;
  // sh only redirects stderr to the log and execs QEMU, so the pid is QEMU's.
  const launch = [
    "sh",
    "-c",
    'log=$1; shift; exec "$@" 2>>"$log" </dev/null >/dev/null',
    "qemu",
    logPath,
    binary,
    ...argv,
  ];
  const [program, args] = options.netns
    ? ["ip", ["netns", "exec", options.netns, ...launch]]
    : [launch[0], launch.slice(1)];
  await Deno.remove(spec.pidFilePath).catch(() => {});
  await Deno.writeTextFile(logPath, "", { mode: 0o600 });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      detached: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    })
      .spawn();
  } catch (err) {
    throw new QemuError(`Cannot start QEMU: ${err instanceof Error ? err.message : err}`, {
      code: "failed_precondition",
      cause: err,
    });
  }
  child.unref();
  let exited: Deno.CommandStatus | undefined;
  // Awaiting the status keeps the child reaped once it exits, whoever stops it.
  child.status.then((s) => exited = s, () => {});
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    if (exited) {
      const tail = await readTail(logPath, 16 << 10).catch(() => ({ bytes: new Uint8Array() }));
      const detail = new TextDecoder().decode(tail.bytes).trim().split("\n").slice(-4).join(" ");
      throw new QemuError(`Cannot start QEMU: ${detail || `it exited with code ${exited.code}`}`, {
        code: "failed_precondition",
      });
    }
    if (await qmpAnswers(spec.monitorSocketPath)) break;
    if (options.signal?.aborted || Date.now() >= deadline) {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
      throw new QemuError(
        options.signal?.aborted
          ? "Stopped starting QEMU: cancelled"
          : `QEMU did not open its monitor within ${(options.timeoutMs ?? 30_000) / 1000}s`,
        { code: options.signal?.aborted ? "cancelled" : "timeout" },
      );
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return new QemuProcess(child.pid, spec.monitorSocketPath, { child });
}

async function qmpAnswers(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Options for {@linkcode QemuProcess.stop} and {@linkcode QemuProcess.waitForExit}. */
export interface QemuWaitOptions {
  /** How long to wait. @default {10000} */
  timeoutMs?: number;
  /** Stops waiting when aborted. */
  signal?: AbortSignal;
}

/**
 * How a {@linkcode QemuProcess} watches and signals its process: through the child handle
 * when this process launched it, else through `PrivilegedOps` (the owner daemon cannot
 * read `/proc` or signal other processes itself), naming the VM directory its command
 * line mentions.
 */
export type QemuWatch = { child: Deno.ChildProcess } | { procs: VmmProcessOps; vmDir: string };

const POLL_MS = 50;

/**
 * A running (detached) QEMU. Disposing it stops it: `await using vm = await launchQemu()`.
 * `pid` is QEMU's own pid (not a wrapper's).
 */
export class QemuProcess implements AsyncDisposable {
  readonly #watch: QemuWatch;
  #exit?: Deno.CommandStatus;

  /** A QEMU launched here (`{ child }`) or found again (`{ procs, vmDir }`). */
  constructor(readonly pid: number, readonly monitorSocketPath: string, watch: QemuWatch) {
    this.#watch = watch;
    if ("child" in watch) watch.child.status.then((s) => this.#exit = s, () => {});
  }

  /** Exit status, once a QEMU launched here has exited (never for a found one). */
  get exitStatus(): Deno.CommandStatus | undefined {
    return this.#exit;
  }

  /**
   * Whether QEMU has not exited: the child status for one launched here, else
   * `/proc/<pid>/stat` (a zombie counts as exited).
   *
   * @throws {BangerError} when `/proc` cannot be read through `PrivilegedOps`.
   */
  async isRunning(): Promise<boolean> {
    if ("child" in this.#watch) return this.#exit === undefined;
    return await processRunning(this.#watch.procs, this.pid);
  }

  /**
   * Waits until QEMU has exited (after a guest `reboot`/`poweroff`, or a stop).
   *
   * @throws {QemuError} with code `timeout` when it is still running after `timeoutMs`,
   *   or `cancelled` when `signal` aborts.
   */
  async waitForExit(options: QemuWaitOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    while (await this.isRunning()) {
      if (options.signal?.aborted) {
        throw new QemuError(`Stopped waiting for QEMU ${this.pid} to exit: cancelled`, {
          code: "cancelled",
        });
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new QemuError(`QEMU ${this.pid} is still running after ${timeoutMs} ms`, {
          code: "timeout",
        });
      }
      // A launched QEMU's exit ends the pause at once; a found one is polled.
      const exited = "child" in this.#watch ? this.#watch.child.status : undefined;
      await pause(exited ? left : Math.min(left, POLL_MS), exited, options.signal);
    }
  }

  /**
   * Runs one QMP command on the monitor socket and returns its `return` value.
   *
   * @throws {QemuError} when the socket cannot be reached, QEMU answers with an error,
   *   or the connection closes before an answer (except for `quit`, whose answer may be
   *   lost as QEMU exits).
   */
  async qmp(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    let conn: Deno.UnixConn;
    try {
      conn = await Deno.connect({ transport: "unix", path: this.monitorSocketPath });
    } catch (err) {
      throw new QemuError(
        `Cannot reach the QEMU monitor at "${this.monitorSocketPath}": ${
          err instanceof Error ? err.message : err
        }`,
        { code: "unavailable", cause: err },
      );
    }
    try {
      return await qmpExchange(conn, execute, args);
    } catch (err) {
      if (!(err instanceof BangerError)) throw err;
      if (execute === "quit" && err.code === "unavailable") return {};
      throw new QemuError(err.message, { code: err.code, cause: err });
    } finally {
      try {
        conn.close();
      } catch {
        // already closed by QEMU exiting
      }
    }
  }

  /**
   * Stops QEMU at once (QMP `quit`: the guest gets no shutdown; callers that
   * care run `sync; reboot` in the guest first). Falls back to SIGTERM, then SIGKILL.
   * Stopping an exited QEMU is a no-op.
   *
   * @throws {QemuError} when the process survives SIGKILL.
   */
  async stop(options: QemuWaitOptions = {}): Promise<void> {
    if (!(await this.isRunning())) return;
    try {
      await this.qmp("quit");
      await this.waitForExit(options);
      return;
    } catch {
      // monitor unreachable or quit ignored: signals below
    }
    for (const sig of ["SIGTERM", "SIGKILL"] as const) {
      if (!(await this.isRunning())) return;
      await this.kill(sig).catch(() => false); // not permitted: the wait below decides
      try {
        await this.waitForExit({ timeoutMs: 5_000, signal: options.signal });
        return;
      } catch (err) {
        if (sig === "SIGKILL") throw err;
      }
    }
  }

  /**
   * Sends `signal` to QEMU.
   *
   * @returns `false` when it had already exited.
   * @throws {BangerError} when `PrivilegedOps.signalVmm` refuses (not this VM's QEMU).
   */
  async kill(signal: Deno.Signal): Promise<boolean> {
    if ("procs" in this.#watch) {
      const { procs, vmDir } = this.#watch;
      return await procs.signalVmm({ pid: this.pid, signal, vmDir });
    }
    if (this.#exit) return false;
    try {
      this.#watch.child.kill(signal);
      return true;
    } catch {
      return false; // it exited since the check
    }
  }

  /** Stops QEMU (see {@linkcode QemuProcess.stop}). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
