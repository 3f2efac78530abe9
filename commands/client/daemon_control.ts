/**
 * Reaching the daemon from the CLI: auto-start when nothing answers (exactly one daemon
 * even when CLIs race, thanks to a lock file), and replacing an older daemon when it is
 * idle.
 *
 * @module
 */

import type { MethodDef } from "../../daemon/api/protocol.ts";
import { daemonShutdown } from "../../daemon/api/daemon.ts";
import { type CallOptions, RpcError, SocketUnavailableError } from "./rpc_client.ts";
import { type CliEnv, CliError } from "../env.ts";

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const POLL_MS = 25;

/**
 * Calls a daemon method, starting the daemon first when none answers and replacing it
 * when it is an older, idle version.
 *
 * @throws {RpcError} for errors the daemon reported.
 * @throws {CliError} when the daemon cannot be started or replaced.
 */
export async function callDaemon<Req, Res>(
  env: CliEnv,
  method: MethodDef<Req, Res>,
  request: Req,
  options: CallOptions = {},
): Promise<Res> {
  for (let attempt = 0;; attempt++) {
    try {
      return await env.client.call(method, request, options);
    } catch (err) {
      // Both failures happen before the daemon ran anything, so retrying is safe.
      if (attempt > 1) throw err;
      if (err instanceof SocketUnavailableError) {
        await startDaemon(env);
        continue;
      }
      if (err instanceof RpcError && err.code === "version_mismatch") {
        await replaceOlderDaemon(env, err.daemonVersion ?? "unknown");
        continue;
      }
      throw err;
    }
  }
}

/** Whether something accepts connections on the daemon socket. */
export async function daemonAnswers(socketPath: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path: socketPath });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts the daemon in its own session (so it outlives this CLI) unless one answers, and
 * waits until it accepts connections. A lock file makes racing CLIs start exactly one.
 *
 * @throws {CliError} when it does not come up in time, with the end of its startup log.
 */
export async function startDaemon(env: CliEnv): Promise<void> {
  await env.ensureRuntimeDir();
  using lock = await Deno.open(env.paths.startLock, {
    create: true,
    write: true,
    mode: 0o600,
  });
  await withTimeout(lock.lock(true), START_TIMEOUT_MS, "another banger to start the daemon");
  try {
    if (await daemonAnswers(env.paths.socket)) return;
    await Deno.writeTextFile(env.paths.startupLog, "", { mode: 0o600 });
    const { program, args } = env.daemonCommand();
    const child = new Deno.Command(program, {
      args,
      detached: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child.unref();
    let exited: Deno.CommandStatus | undefined;
    child.status.then((s) => exited = s, () => {});
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (await daemonAnswers(env.paths.socket)) return;
      if (exited) break;
      await sleep(POLL_MS);
    }
    const log = await Deno.readTextFile(env.paths.startupLog).catch(() => "");
    const why = log.trim().split("\n").slice(-3).join(" ") ||
      (exited ? `it exited with code ${exited.code}` : "it did not answer in time");
    throw new CliError(`Cannot start the banger daemon: ${why}`, {
      hint: "run `banger daemon` in a terminal to see why",
    });
  } finally {
    await lock.unlock().catch(() => {});
  }
}

/**
 * Stops the daemon politely and waits until its socket stops answering.
 *
 * @param force stop even while operations are in flight (they are cancelled).
 * @returns the stopped daemon's pid, or `undefined` when none was running.
 */
export async function stopDaemon(env: CliEnv, force: boolean): Promise<number | undefined> {
  let pid: number;
  try {
    ({ pid } = await env.client.call(daemonShutdown, { force }));
  } catch (err) {
    if (err instanceof SocketUnavailableError) return undefined;
    throw err;
  }
  // The daemon holds its pid lock until the process exits: taking it means it is gone.
  try {
    using lock = await Deno.open(env.paths.pidLock, { read: true, write: true });
    await withTimeout(lock.lock(true), STOP_TIMEOUT_MS, `the daemon (pid ${pid}) to exit`);
    await lock.unlock();
    return pid;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return pid;
    if (!(err instanceof CliError)) throw err;
  }
  throw new CliError(
    `The banger daemon (pid ${pid}) did not stop within ${STOP_TIMEOUT_MS / 1000}s`,
    {
      hint: `kill ${pid}`,
    },
  );
}

async function replaceOlderDaemon(env: CliEnv, daemonVersion: string): Promise<void> {
  // Loaded only when the versions differ: the comparator is an npm module, and the
  // common call, same version, should not pay for resolving it.
  const { compareVersions } = await import("../../host/version.ts");
  if (compareVersions(daemonVersion, env.client.version) > 0) {
    throw new CliError(
      `This banger (${env.client.version}) is older than the running daemon (${daemonVersion})`,
      { hint: "use the newer banger binary, or replace the daemon: banger daemon stop" },
    );
  }
  try {
    await stopDaemon(env, false);
  } catch (err) {
    if (err instanceof RpcError && err.code === "conflict") {
      throw new CliError(
        `The running daemon (${daemonVersion}) is older than this banger (${env.client.version}) and is busy: ${err.message}`,
        { hint: "run `banger daemon stop` once its operations finish" },
      );
    }
    throw err;
  }
  env.err(`banger: restarted the daemon (was ${daemonVersion}, now ${env.client.version})\n`);
  await startDaemon(env);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new CliError(`Timed out after ${ms / 1000}s waiting for ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
