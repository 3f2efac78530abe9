/**
 * The Firecracker process: launch it in its own session (so neither a CLI nor a daemon
 * restart kills it), wait for its API socket, configure and start the guest, stop it in
 * bounded steps, and find a running one again after a daemon restart.
 *
 * Files in the VM directory (names from {@linkcode vmFiles}):
 * - `fc.sock` API socket and `vsock.sock` vsock socket: removed before a launch (Firecracker
 *   refuses an existing path) and after the process is gone.
 * - `serial.log`: Firecracker's stdout and stderr, i.e. the guest console (`console=ttyS0`),
 *   plus what Firecracker prints before its logger is configured and any panic text.
 *   Truncated at each launch.
 * - `vmm.log` (`PUT /logger`) and `metrics.json` (`PUT /metrics`): replaced by empty files
 *   (0600) before a launch, because Firecracker opens them without truncating or appending
 *   and, before v1.14, without creating them.
 * - `vmm.pid`: the VMM's pid, written atomically right after the spawn.
 *
 * Liveness of a VMM this process launched is its child status (an unreaped child's pid
 * cannot be recycled), and it is signalled through its `ChildProcess`. A VMM adopted from
 * its pidfile (after a daemon restart) is alive while `/proc/<pid>/cmdline` names our API
 * socket, read through `PrivilegedOps.readProcFile`, so a recycled pid is never mistaken
 * for ours, and it is signalled through `PrivilegedOps.signalVmm`: the owner daemon has no
 * `--allow-ffi` and no unscoped `--allow-run`.
 *
 * @module
 */

import { readTail } from "../../os/log_file.ts";
import { writeFileAtomic } from "../../os/atomic_file.ts";
import { FirecrackerClient, FirecrackerError } from "./api.ts";
import { type FirecrackerVmSpec, renderFirecrackerConfig } from "./config.ts";
import { type FirecrackerMetrics, parseFirecrackerMetrics } from "./metrics.ts";
import {
  applyCall,
  logTail,
  namesApiSocket,
  raceTimeout,
  removeFiles,
  sleep,
  spawnFirecracker,
  waitForApi,
} from "./_wait.ts";
import { vmFiles } from "../../layout.ts";
import type { VmmProcessOps } from "../../privileged/privileged_ops.ts";
import { processArgv } from "../../os/process.ts";

/** Options of {@linkcode Firecracker.adopt}. */
export interface FirecrackerAdoptOptions {
  /** Reads `/proc` and signals a VMM this process did not launch (`PrivilegedOps`). */
  procs: VmmProcessOps;
  /** Timeout of each API request. @default {5000} */
  requestTimeoutMs?: number;
}

/** Options for {@linkcode Firecracker.launch} (`procs` finds a VMM already running). */
export interface FirecrackerLaunchOptions extends FirecrackerAdoptOptions {
  /** The firecracker binary: a name looked up on PATH, or a path. */
  binary: string;
  /** Absolute per-VM directory (created 0700 if missing). */
  vmDir: string;
  /** Instance id (`--id`): 1–64 of A-Z a-z 0-9 and `-`. */
  id: string;
  /** More firecracker flags, e.g. `["--boot-timer"]`. */
  extraArgs?: readonly string[];
  /** Extra environment variables for the process. */
  env?: Record<string, string>;
  /** How long to wait for the API socket to answer. @default {5000} */
  apiTimeoutMs?: number;
  /** Aborts the wait for the API socket (the half-started process is killed). */
  signal?: AbortSignal;
}

/** Bounds of the steps of {@linkcode Firecracker.stop}. */
export interface FirecrackerStopOptions {
  /** Wait for the process to exit on its own (after an in-guest reboot). @default {10000} */
  exitWaitMs?: number;
  /** Wait after `SendCtrlAltDel`. @default {10000} */
  ctrlAltDelWaitMs?: number;
  /** Wait after SIGKILL. @default {5000} */
  killWaitMs?: number;
  /** Abandons the stop between steps. */
  signal?: AbortSignal;
}

/** Which step of {@linkcode Firecracker.stop} saw the process end. */
export type FirecrackerStopStep = "already-exited" | "exit" | "ctrl-alt-del" | "sigkill";

/** What {@linkcode Firecracker.stop} did. */
export interface FirecrackerStopResult {
  /** The step after which the process was gone. */
  endedBy: FirecrackerStopStep;
  /** Wall time of the whole stop. */
  elapsedMs: number;
  /** Exit status, when this process launched the VMM (unknown for an adopted one). */
  exit?: { code: number; signal: string | null };
  /** Steps that failed without stopping the sequence, e.g. a refused `SendCtrlAltDel`. */
  notes: string[];
}

const INSTANCE_ID = /^[A-Za-z0-9-]{1,64}$/;

/** The last lines of a VM's console log (`<vmDir>/serial.log`), joined with ` | `. */
export function serialLogTail(vmDir: string): Promise<string> {
  return logTail(`${vmDir}/${vmFiles.serialLog}`);
}
const ADOPTED_POLL_MS = 50;

/**
 * One Firecracker VMM process, launched here or adopted from its pidfile.
 *
 * Not disposable on purpose: a VMM must outlive the daemon that started it. Callers that
 * need an undo (a failed start) push `() => vmm.stop()` onto their stack.
 *
 * @example
 * ```ts
 * const vmm = await Firecracker.launch({ binary: "firecracker", vmDir, id: "dev", procs: ops });
 * await vmm.configure(spec);
 * await vmm.start();
 * // later, after `sync; reboot` over SSH:
 * const { endedBy } = await vmm.stop(); // "exit" | "ctrl-alt-del" | "sigkill"
 * ```
 */
export class Firecracker {
  /** The VMM's pid. */
  readonly pid: number;
  /** Its per-VM directory. */
  readonly vmDir: string;
  /** `<vmDir>/fc.sock`. */
  readonly apiSocket: string;
  /** API client bound to {@linkcode Firecracker.apiSocket}. */
  readonly client: FirecrackerClient;
  /** Set exactly when this process launched the VMM (then `#procs` is unused). */
  readonly #child?: Deno.ChildProcess;
  readonly #procs: VmmProcessOps;
  #exit?: Deno.CommandStatus;

  private constructor(
    pid: number,
    vmDir: string,
    requestTimeoutMs: number,
    watch: { procs: VmmProcessOps; child?: Deno.ChildProcess },
  ) {
    this.pid = pid;
    this.vmDir = vmDir;
    this.apiSocket = `${vmDir}/${vmFiles.apiSocket}`;
    this.client = new FirecrackerClient(this.apiSocket, { timeoutMs: requestTimeoutMs });
    this.#procs = watch.procs;
    this.#child = watch.child;
    this.#child?.status.then((s) => this.#exit = s, () => {});
  }

  /**
   * Starts firecracker for one VM and waits until its API socket answers.
   *
   * @throws {FirecrackerError} `invalid_argument` for a bad id, `conflict` when a VMM already
   *   runs for `vmDir`, `timeout` when the socket stays silent (the process is killed),
   *   `failed_precondition` when the process exits first (with the end of `serial.log`).
   */
  static async launch(options: FirecrackerLaunchOptions): Promise<Firecracker> {
    if (!INSTANCE_ID.test(options.id)) {
      throw new FirecrackerError(
        `Cannot launch Firecracker with instance id "${options.id}": it must be 1–64 of A-Z a-z 0-9 and "-"`,
        { code: "invalid_argument" },
      );
    }
    await Deno.mkdir(options.vmDir, { recursive: true, mode: 0o700 });
    const running = await Firecracker.adopt(options.vmDir, { procs: options.procs });
    if (running) {
      throw new FirecrackerError(
        `Cannot launch Firecracker for VM "${options.id}": pid ${running.pid} already serves "${running.apiSocket}"`,
        { code: "conflict", hint: "stop that VMM first" },
      );
    }
    const file = (name: string) => `${options.vmDir}/${name}`;
    await removeFiles(
      [vmFiles.apiSocket, vmFiles.vsockSocket, vmFiles.vmmLog, vmFiles.metrics, vmFiles.pidFile]
        .map(file),
    );
    for (const name of [vmFiles.serialLog, vmFiles.vmmLog, vmFiles.metrics]) {
      await Deno.writeFile(file(name), new Uint8Array(), { mode: 0o600 });
    }
    const child = spawnFirecracker({
      binary: options.binary,
      apiSocket: file(vmFiles.apiSocket),
      serialLog: file(vmFiles.serialLog),
      args: ["--id", options.id, ...(options.extraArgs ?? [])],
      env: options.env,
    });
    child.unref();
    const vmm = new Firecracker(child.pid, options.vmDir, options.requestTimeoutMs ?? 5000, {
      procs: options.procs,
      child,
    });
    try {
      await writeFileAtomic(file(vmFiles.pidFile), `${child.pid}\n`);
      await waitForApi({
        id: options.id,
        apiSocket: vmm.apiSocket,
        serialLog: file(vmFiles.serialLog),
        timeoutMs: options.apiTimeoutMs ?? 5000,
        exit: () => vmm.#exit,
        signal: options.signal,
      });
    } catch (err) {
      await vmm.#killQuietly();
      throw err;
    }
    return vmm;
  }

  /**
   * Finds the VMM still running for `vmDir` from its pidfile, e.g. after a daemon restart.
   *
   * @returns `undefined` when there is no pidfile or its pid no longer serves our socket.
   * @throws {BangerError} when liveness cannot be read (the root helper does not answer).
   */
  static async adopt(
    vmDir: string,
    options: FirecrackerAdoptOptions,
  ): Promise<Firecracker | undefined> {
    let text: string;
    try {
      text = await Deno.readTextFile(`${vmDir}/${vmFiles.pidFile}`);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    const vmm = new Firecracker(pid, vmDir, options.requestTimeoutMs ?? 5000, options);
    return (await vmm.isRunning()) ? vmm : undefined;
  }

  /** Exit status, once this process's own child has exited (never for an adopted VMM). */
  get exitStatus(): Deno.CommandStatus | undefined {
    return this.#exit;
  }

  /**
   * Whether the VMM still runs: the child status for one launched here, else whether the
   * pid's command line still names our API socket.
   *
   * @throws {BangerError} when `/proc` cannot be read (never "not running" by mistake).
   */
  async isRunning(): Promise<boolean> {
    if (this.#child) return this.#exit === undefined;
    return namesApiSocket((await processArgv(this.#procs, this.pid)) ?? [], this.apiSocket);
  }

  /**
   * Sends every configuration call rendered from `spec`, in order, without starting.
   *
   * @throws {FirecrackerError} with Firecracker's `faultMessage` when a call is refused.
   */
  async configure(spec: FirecrackerVmSpec, signal?: AbortSignal): Promise<void> {
    if (spec.vmDir !== this.vmDir) {
      throw new FirecrackerError(
        `Cannot configure the VMM of "${this.vmDir}" with a spec for "${spec.vmDir}"`,
        { code: "invalid_argument" },
      );
    }
    for (const call of renderFirecrackerConfig(spec).calls) {
      if (call.resource !== "action") await applyCall(this.client, call, signal);
    }
  }

  /** Boots the configured guest (`InstanceStart`). @throws {FirecrackerError} */
  start(signal?: AbortSignal): Promise<void> {
    return this.client.putAction("InstanceStart", signal);
  }

  /**
   * Waits up to `timeoutMs` for the process to end.
   *
   * @returns whether it ended.
   */
  async waitForExit(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    if (this.#child) {
      if (this.#exit) return true;
      await raceTimeout(this.#child.status, timeoutMs, signal);
      return this.#exit !== undefined;
    }
    while (await this.isRunning()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await sleep(Math.min(ADOPTED_POLL_MS, left), signal);
    }
    return true;
  }

  /**
   * Ends the VMM: waits for it to exit by itself (the caller asked the guest to `reboot`),
   * then sends `SendCtrlAltDel` and waits, then SIGKILL and waits. Each step is bounded;
   * the result says which one ended it. Removes the sockets and pidfile afterwards.
   *
   * @throws {FirecrackerError} `timeout` when it survives SIGKILL for `killWaitMs`.
   */
  async stop(options: FirecrackerStopOptions = {}): Promise<FirecrackerStopResult> {
    const started = Date.now();
    const notes: string[] = [];
    const { signal } = options;
    const done = async (endedBy: FirecrackerStopStep): Promise<FirecrackerStopResult> => {
      await this.cleanup();
      const result: FirecrackerStopResult = { endedBy, elapsedMs: Date.now() - started, notes };
      if (this.#exit) result.exit = { code: this.#exit.code, signal: this.#exit.signal };
      return result;
    };
    if (!(await this.isRunning())) return done("already-exited");
    if (await this.waitForExit(options.exitWaitMs ?? 10_000, signal)) return done("exit");
    let cadSent = true;
    try {
      await this.client.putAction("SendCtrlAltDel", signal);
    } catch (err) {
      cadSent = false;
      notes.push(err instanceof Error ? err.message : String(err));
    }
    if (cadSent && await this.waitForExit(options.ctrlAltDelWaitMs ?? 10_000, signal)) {
      return done("ctrl-alt-del");
    }
    if (!(await this.isRunning())) return done("ctrl-alt-del");
    await this.kill("SIGKILL");
    const killWaitMs = options.killWaitMs ?? 5000;
    if (await this.waitForExit(killWaitMs, signal)) return done("sigkill");
    throw new FirecrackerError(
      `Cannot stop Firecracker (pid ${this.pid}) of "${this.vmDir}": it still runs ${killWaitMs} ms after SIGKILL`,
      { code: "timeout", hint: `check the process state: cat /proc/${this.pid}/status` },
    );
  }

  /**
   * Sends `signal` to the VMM if it is still ours (`vm kill`).
   *
   * @returns whether a signal was sent.
   */
  async kill(signal: Deno.Signal = "SIGKILL"): Promise<boolean> {
    if (!(await this.isRunning())) return false;
    if (this.#child) {
      try {
        this.#child.kill(signal);
        return true;
      } catch {
        return false; // it exited since the check
      }
    }
    try {
      return await this.#procs.signalVmm({ pid: this.pid, signal, vmDir: this.vmDir });
    } catch (err) {
      throw new FirecrackerError(`Cannot send ${signal} to Firecracker (pid ${this.pid})`, {
        cause: err,
      });
    }
  }

  /**
   * Removes the API socket, the vsock socket and the pidfile of a VMM that is gone; keeps
   * the logs and metrics.
   *
   * @throws {FirecrackerError} `failed_precondition` when the VMM still runs.
   */
  async cleanup(): Promise<void> {
    if (await this.isRunning()) {
      throw new FirecrackerError(
        `Cannot clean up "${this.vmDir}": Firecracker (pid ${this.pid}) still runs`,
        { code: "failed_precondition" },
      );
    }
    await removeFiles(
      [vmFiles.apiSocket, vmFiles.vsockSocket, vmFiles.pidFile].map((n) => `${this.vmDir}/${n}`),
    );
  }

  /** The last complete metrics line Firecracker wrote, if any (for `vm stats`). */
  async readMetrics(): Promise<FirecrackerMetrics | undefined> {
    try {
      // Only the end: one metrics line is a few KiB, and the file grows for the VM's life.
      const { bytes } = await readTail(`${this.vmDir}/${vmFiles.metrics}`, 256 << 10);
      return parseFirecrackerMetrics(new TextDecoder().decode(bytes));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
  }

  async #killQuietly(): Promise<void> {
    try {
      if (!this.#exit) this.#child?.kill("SIGKILL");
    } catch {
      // already gone
    }
    await this.waitForExit(5000).catch(() => false);
    await this.cleanup().catch(() => {});
  }
}
