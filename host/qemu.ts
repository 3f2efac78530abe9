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
 * (`host/kvm.ts`: a nested PVM `/dev/kvm` cannot), else `-accel tcg -cpu max`. Under TCG
 * the kernel needs `tsc_early_khz` (`host/kernel_cmdline.ts`).
 *
 * @module
 */

import { processExists, signalProcess } from "./process.ts";
import { BangerError } from "./errors.ts";
import { UNIX_PATH_MAX } from "./layout.ts";
import { readProcFileIfExists } from "./procfs.ts";

/** QEMU could not be started, reached or stopped. */
export class QemuError extends BangerError {}

/** What to run. All paths absolute. */
export interface QemuVmSpec {
  /** `kvm` only when KVM can run a standard guest. */
  accel: "kvm" | "tcg";
  /** Virtual CPUs. */
  vcpus: number;
  /** Guest memory in MiB. */
  memoryMib: number;
  /** ELF `vmlinux` (booted through PVH) or bzImage. */
  kernelPath: string;
  /** The banger initrd. */
  initrdPath: string;
  /** Full kernel command line (`host/kernel_cmdline.ts`). */
  cmdline: string;
  /** Root disk image, the guest's `/dev/vda` (read-write). */
  rootDiskPath: string;
  /** Work disk image, the guest's `/dev/vdb`. */
  workDiskPath?: string;
  /** Host tap for the guest NIC, with the guest MAC. */
  tap?: { name: string; mac: string };
  /** Guest CID; set only when `/dev/vhost-vsock` exists. */
  vsockCid?: number;
  /** Serial console log (appended). */
  serialLogPath: string;
  /** QMP monitor unix socket. */
  monitorSocketPath: string;
  /** Where QEMU writes its pid. */
  pidFilePath: string;
}

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
  checkSpec(spec);
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

function checkSpec(spec: QemuVmSpec): void {
  const bad = (why: string) =>
    new QemuError(`Cannot build the QEMU command line: ${why}`, { code: "invalid_argument" });
  const paths: [string, string | undefined][] = [
    ["kernel", spec.kernelPath],
    ["initrd", spec.initrdPath],
    ["root disk", spec.rootDiskPath],
    ["work disk", spec.workDiskPath],
    ["serial log", spec.serialLogPath],
    ["monitor socket", spec.monitorSocketPath],
    ["pid file", spec.pidFilePath],
  ];
  for (const [what, path] of paths) {
    if (path === undefined) continue;
    // deno-lint-ignore no-control-regex
    if (!path.startsWith("/") || /[,\x00-\x1f\x7f]/.test(path)) {
      throw bad(`${what} path "${path}" must be absolute, without commas or control characters`);
    }
  }
  if (new TextEncoder().encode(spec.monitorSocketPath).length >= UNIX_PATH_MAX) {
    throw bad(`monitor socket path "${spec.monitorSocketPath}" is longer than 107 bytes`);
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(spec.cmdline)) throw bad("the kernel command line has a newline");
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) throw bad(`vcpus must be ≥ 1`);
  if (!Number.isInteger(spec.memoryMib) || spec.memoryMib < 64) {
    throw bad(`memory must be at least 64 MiB`);
  }
  if (spec.tap) {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(spec.tap.name)) {
      throw bad(`tap name "${spec.tap.name}" must be 1-15 of A-Z, a-z, 0-9, '_', '.', '-'`);
    }
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(spec.tap.mac)) {
      throw bad(`MAC "${spec.tap.mac}" must be six lowercase hex pairs`);
    }
  }
  if (spec.vsockCid !== undefined && (!Number.isInteger(spec.vsockCid) || spec.vsockCid < 3)) {
    throw bad(`vsock CID ${spec.vsockCid} must be an integer ≥ 3`);
  }
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
  const argv = renderQemuArgv(spec);
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
      const detail = (await Deno.readTextFile(logPath).catch(() => "")).trim().split("\n").slice(-4)
        .join(" ");
      throw new QemuError(`Cannot start QEMU: ${detail || `it exited with code ${exited.code}`}`, {
        code: "failed_precondition",
      });
    }
    if (await qmpAnswers(spec.monitorSocketPath)) break;
    if (options.signal?.aborted || Date.now() >= deadline) {
      signalProcess(child.pid, "SIGKILL");
      throw new QemuError(
        options.signal?.aborted
          ? "Stopped starting QEMU: cancelled"
          : `QEMU did not open its monitor within ${(options.timeoutMs ?? 30_000) / 1000}s`,
        { code: options.signal?.aborted ? "cancelled" : "timeout" },
      );
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return new QemuProcess(child.pid, spec.monitorSocketPath);
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

const POLL_MS = 50;

/**
 * A running (detached) QEMU. Disposing it stops it: `await using vm = await launchQemu()`.
 * `pid` is QEMU's own pid (not a wrapper's), from its pid file.
 */
export class QemuProcess implements AsyncDisposable {
  constructor(readonly pid: number, readonly monitorSocketPath: string) {}

  /** Whether the process still exists and has not exited (a zombie counts as exited). */
  isRunning(): boolean {
    if (!processExists(this.pid)) return false;
    // A QEMU whose parent went away is reparented to PID 1, which may reap it late.
    const stat = readProcFileIfExists(`/proc/${this.pid}/stat`);
    if (stat === undefined) return false;
    const state = stat.charAt(stat.lastIndexOf(")") + 2);
    return state !== "Z" && state !== "X";
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
    while (this.isRunning()) {
      if (options.signal?.aborted) {
        throw new QemuError(`Stopped waiting for QEMU ${this.pid} to exit: cancelled`, {
          code: "cancelled",
        });
      }
      if (Date.now() >= deadline) {
        throw new QemuError(`QEMU ${this.pid} is still running after ${timeoutMs} ms`, {
          code: "timeout",
        });
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
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
      const lines = qmpLines(conn);
      await expectQmp(lines, undefined, "greeting"); // {"QMP": {...}}
      await sendQmp(conn, { execute: "qmp_capabilities" });
      await expectQmp(lines, "return", "qmp_capabilities");
      await sendQmp(conn, args ? { execute, arguments: args } : { execute });
      try {
        return await expectQmp(lines, "return", execute);
      } catch (err) {
        if (execute === "quit" && err instanceof QemuError && err.code === "unavailable") return {};
        throw err;
      }
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
    if (!this.isRunning()) return;
    try {
      await this.qmp("quit");
      await this.waitForExit(options);
      return;
    } catch {
      // monitor unreachable or quit ignored: signals below
    }
    for (const sig of ["SIGTERM", "SIGKILL"] as const) {
      if (!this.isRunning()) return;
      try {
        signalProcess(this.pid, sig);
      } catch {
        // already gone, or not permitted: the wait below decides
      }
      try {
        await this.waitForExit({ timeoutMs: 5_000, signal: options.signal });
        return;
      } catch (err) {
        if (sig === "SIGKILL") throw err;
      }
    }
  }

  /** Stops QEMU (see {@linkcode QemuProcess.stop}). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Splits a QMP connection into JSON lines. */
async function* qmpLines(conn: Deno.UnixConn): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const buf = new Uint8Array(65536);
  let pending = "";
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) return;
    pending += decoder.decode(buf.subarray(0, n), { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) !== -1) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line) yield line;
    }
  }
}

async function sendQmp(conn: Deno.UnixConn, message: Record<string, unknown>): Promise<void> {
  await conn.write(new TextEncoder().encode(JSON.stringify(message) + "\n"));
}

/**
 * Reads past events to the next reply. With `key` undefined, takes the greeting.
 * Returns the reply's `return` value.
 */
async function expectQmp(
  lines: AsyncGenerator<string>,
  key: "return" | undefined,
  what: string,
): Promise<unknown> {
  // next(), not for-await: leaving a for-await loop would close the generator.
  for (let r = await lines.next(); !r.done; r = await lines.next()) {
    const line = r.value;
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line);
    } catch {
      throw new QemuError(`Cannot read the QEMU monitor's answer to "${what}": not JSON`);
    }
    if ("event" in message) continue;
    if (key === undefined) return message;
    if ("error" in message) {
      const error = message.error as { desc?: string } | undefined;
      throw new QemuError(`QEMU refused "${what}": ${error?.desc ?? "unknown error"}`, {
        code: "failed_precondition",
      });
    }
    if (key in message) return message[key];
  }
  throw new QemuError(`Cannot read the QEMU monitor's answer to "${what}": it closed`, {
    code: "unavailable",
  });
}
