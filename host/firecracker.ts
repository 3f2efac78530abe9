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
 * - `vmm.log` (`PUT /logger`) and `metrics.json` (`PUT /metrics`): removed before a launch
 *   because Firecracker opens them without truncating or appending.
 * - `vmm.pid`: the VMM's pid, written atomically right after the spawn.
 *
 * Liveness is "the pid's `/proc/<pid>/cmdline` names our API socket", read through
 * `host/procfs.ts` (FFI, no `--allow-all`), so a recycled pid is never mistaken for ours.
 *
 * @module
 */

import { writeFileAtomic } from "./atomic_file.ts";
import { FirecrackerClient, FirecrackerError } from "./firecracker_api.ts";
import {
  type FirecrackerApiCall,
  type FirecrackerVmSpec,
  renderFirecrackerConfig,
} from "./firecracker_config.ts";
import { type FirecrackerMetrics, parseFirecrackerMetrics } from "./firecracker_metrics.ts";
import {
  answers,
  describeStatus,
  logTail,
  raceTimeout,
  removeFiles,
  sleep,
} from "./_firecracker_wait.ts";
import { vmFiles } from "./layout.ts";
import { signalProcess } from "./process.ts";
import { readProcFileIfExists } from "./procfs.ts";

/** Options for {@linkcode Firecracker.launch}. */
export interface FirecrackerLaunchOptions {
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
  /** Timeout of each API request. @default {5000} */
  requestTimeoutMs?: number;
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
const POLL_MS = 10;
const ADOPTED_POLL_MS = 50;
// Runs firecracker with umask 077 (sockets and logs it creates are private) and its
// stdout+stderr appended to the serial log; `exec` keeps the pid.
const LAUNCH_SCRIPT = 'umask 077; log=$1; shift; exec "$@" >>"$log" 2>&1';

/**
 * One Firecracker VMM process, launched here or adopted from its pidfile.
 *
 * Not disposable on purpose: a VMM must outlive the daemon that started it. Callers that
 * need an undo (a failed start) push `() => vmm.stop()` onto their stack.
 *
 * @example
 * ```ts
 * const vmm = await Firecracker.launch({ binary: "firecracker", vmDir, id: "dev" });
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
  readonly #child?: Deno.ChildProcess;
  #exit?: Deno.CommandStatus;

  private constructor(
    pid: number,
    vmDir: string,
    requestTimeoutMs: number,
    child?: Deno.ChildProcess,
  ) {
    this.pid = pid;
    this.vmDir = vmDir;
    this.apiSocket = `${vmDir}/${vmFiles.apiSocket}`;
    this.client = new FirecrackerClient(this.apiSocket, { timeoutMs: requestTimeoutMs });
    this.#child = child;
    child?.status.then((s) => this.#exit = s, () => {});
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
    const running = await Firecracker.adopt(options.vmDir);
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
    await Deno.writeFile(file(vmFiles.serialLog), new Uint8Array(), { mode: 0o600 });
    const child = new Deno.Command("sh", {
      args: [
        "-c",
        LAUNCH_SCRIPT,
        "banger-firecracker",
        file(vmFiles.serialLog),
        options.binary,
        "--api-sock",
        file(vmFiles.apiSocket),
        "--id",
        options.id,
        ...(options.extraArgs ?? []),
      ],
      env: options.env,
      detached: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child.unref();
    const vmm = new Firecracker(child.pid, options.vmDir, options.requestTimeoutMs ?? 5000, child);
    try {
      await writeFileAtomic(file(vmFiles.pidFile), `${child.pid}\n`);
      await vmm.#waitForApi(options.id, options.apiTimeoutMs ?? 5000, options.signal);
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
   */
  static async adopt(
    vmDir: string,
    options: { requestTimeoutMs?: number } = {},
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
    const vmm = new Firecracker(pid, vmDir, options.requestTimeoutMs ?? 5000);
    return (await vmm.isRunning()) ? vmm : undefined;
  }

  /** Exit status, once this process's own child has exited (never for an adopted VMM). */
  get exitStatus(): Deno.CommandStatus | undefined {
    return this.#exit;
  }

  /** Whether the pid is alive and still our VMM (its command line names our API socket). */
  isRunning(): Promise<boolean> {
    if (this.#exit) return Promise.resolve(false);
    let cmdline: string | undefined;
    try {
      cmdline = readProcFileIfExists(`/proc/${this.pid}/cmdline`);
    } catch {
      cmdline = undefined;
    }
    const argv = (cmdline ?? "").split("\0");
    const i = argv.indexOf("--api-sock");
    const ours = (i >= 0 && argv[i + 1] === this.apiSocket) ||
      argv.includes(`--api-sock=${this.apiSocket}`);
    return Promise.resolve(ours);
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
      if (call.resource !== "action") await this.#apply(call, signal);
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
    try {
      return signalProcess(this.pid, signal);
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
      return parseFirecrackerMetrics(await Deno.readTextFile(`${this.vmDir}/${vmFiles.metrics}`));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
  }

  #apply(call: FirecrackerApiCall, signal?: AbortSignal): Promise<void> {
    const c = this.client;
    switch (call.resource) {
      case "logger":
        return c.putLogger(call.body, signal);
      case "metrics":
        return c.putMetrics(call.body, signal);
      case "boot-source":
        return c.putBootSource(call.body, signal);
      case "drive":
        return c.putDrive(call.body, signal);
      case "network-interface":
        return c.putNetworkInterface(call.body, signal);
      case "machine-config":
        return c.putMachineConfig(call.body, signal);
      case "vsock":
        return c.putVsock(call.body, signal);
      case "action":
        return c.putAction(call.body.action_type, signal);
    }
  }

  async #waitForApi(id: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      if (this.#exit) {
        const tail = await logTail(`${this.vmDir}/${vmFiles.serialLog}`);
        throw new FirecrackerError(
          `Cannot start Firecracker for VM "${id}": it exited with ${
            describeStatus(this.#exit)
          } before its API socket answered${tail ? `: ${tail}` : ""}`,
          { code: "failed_precondition", hint: `see ${this.vmDir}/${vmFiles.serialLog}` },
        );
      }
      if (await answers(this.apiSocket)) return;
      if (Date.now() >= deadline) {
        throw new FirecrackerError(
          `Cannot start Firecracker for VM "${id}": its API socket "${this.apiSocket}" did not answer within ${timeoutMs} ms`,
          { code: "timeout", hint: `see ${this.vmDir}/${vmFiles.serialLog}` },
        );
      }
      await sleep(POLL_MS, signal);
    }
  }

  async #killQuietly(): Promise<void> {
    try {
      if (!this.#exit) signalProcess(this.pid, "SIGKILL");
    } catch {
      // already gone
    }
    await this.waitForExit(5000).catch(() => false);
    await this.cleanup().catch(() => {});
  }
}
