/**
 * Waiting and small pure helpers of `host/vmm/firecracker/firecracker.ts` (folder-private).
 *
 * @module
 */

import { readTail } from "../../os/log_file.ts";
import { type FirecrackerClient, FirecrackerError } from "./api.ts";
import type { FirecrackerApiCall } from "./config.ts";

/** Whether a Firecracker argv names `apiSocket` (`--api-sock X` or `--api-sock=X`). Pure. */
export function namesApiSocket(argv: readonly string[], apiSocket: string): boolean {
  const i = argv.indexOf("--api-sock");
  return (i >= 0 && argv[i + 1] === apiSocket) || argv.includes(`--api-sock=${apiSocket}`);
}

// Runs firecracker with umask 077 (sockets and logs it creates are private) and its
// stdout+stderr appended to the serial log; `exec` keeps the pid.
const LAUNCH_SCRIPT = 'umask 077; log=$1; shift; exec "$@" >>"$log" 2>&1';

/** Starts firecracker detached (own session) through `sh`, whose `exec` keeps the pid. */
export function spawnFirecracker(o: {
  binary: string;
  apiSocket: string;
  serialLog: string;
  args: string[];
  env?: Record<string, string>;
}): Deno.ChildProcess {
  return new Deno.Command("sh", {
    args: ["-c", LAUNCH_SCRIPT, "banger-firecracker", o.serialLog, o.binary, "--api-sock"]
      .concat(o.apiSocket, o.args),
    env: o.env,
    detached: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** Sends one rendered configuration call. */
export function applyCall(
  c: FirecrackerClient,
  call: FirecrackerApiCall,
  signal?: AbortSignal,
): Promise<void> {
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

const POLL_MS = 10;

/**
 * Waits until a launched VMM's API socket answers.
 *
 * @throws {FirecrackerError} `failed_precondition` when the process exits first (with the
 *   end of its serial log), `timeout` when the socket stays silent for `timeoutMs`.
 */
export async function waitForApi(o: {
  id: string;
  apiSocket: string;
  serialLog: string;
  timeoutMs: number;
  exit: () => Deno.CommandStatus | undefined;
  signal?: AbortSignal;
}): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    o.signal?.throwIfAborted();
    const exit = o.exit();
    if (exit) {
      const tail = await logTail(o.serialLog);
      throw new FirecrackerError(
        `Cannot start Firecracker for VM "${o.id}": it exited with ${
          describeStatus(exit)
        } before its API socket answered${tail ? `: ${tail}` : ""}`,
        { code: "failed_precondition", hint: `see ${o.serialLog}` },
      );
    }
    if (await answers(o.apiSocket)) return;
    if (Date.now() >= deadline) {
      throw new FirecrackerError(
        `Cannot start Firecracker for VM "${o.id}": its API socket "${o.apiSocket}" did not answer within ${o.timeoutMs} ms`,
        { code: "timeout", hint: `see ${o.serialLog}` },
      );
    }
    await sleep(POLL_MS, o.signal);
  }
}

/** Whether a unix socket accepts a connection. */
export async function answers(socketPath: string): Promise<boolean> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socketPath });
  } catch {
    return false;
  }
  conn.close();
  return true;
}

/** Removes files, ignoring ones already gone. */
export async function removeFiles(paths: string[]): Promise<void> {
  for (const path of paths) {
    try {
      await Deno.remove(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
}

/** The last three lines of a log, joined with ` | `. */
export async function logTail(path: string): Promise<string> {
  const { bytes } = await readTail(path, 16 << 10).catch(() => ({ bytes: new Uint8Array() }));
  return new TextDecoder().decode(bytes).trim().split("\n").slice(-3).join(" | ");
}

/** `code N` or `signal SIG`. */
export function describeStatus(s: Deno.CommandStatus): string {
  return s.signal ? `signal ${s.signal}` : `code ${s.code}`;
}

/** Waits `ms`, or rejects with the signal's reason when it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Waits for `p` at most `ms`; throws if `signal` aborted meanwhile. */
export async function raceTimeout(
  p: Promise<unknown>,
  ms: number,
  signal?: AbortSignal,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await Promise.race([
      p,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
        onAbort = () => resolve();
        signal?.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
  signal?.throwIfAborted();
}
