/**
 * The daemon process: takes the single-instance lock, opens config, log and store, wires
 * the services to the RPC server, reconciles host state with the store, and runs until
 * told to stop. Guests are never tied to this process: stopping the daemon leaves
 * running VMs running, and the next daemon adopts them.
 *
 * @module
 */

import { BangerError, errorMessage } from "../host/errors.ts";
import {
  daemonLogPath,
  daemonPidLock,
  daemonSocket,
  daemonStartupLog,
  ensureLayout,
  type Layout,
  storePath,
} from "../host/layout.ts";
import { Store } from "../store/db.ts";
import { BANGER_VERSION, METHODS } from "./api/mod.ts";
import { loadConfig } from "./config.ts";
import { Logger } from "./logger.ts";
import { RpcServer } from "./rpc/server.ts";
import { buildServices, type DaemonServices } from "./services.ts";
import { buildHandlers } from "./rpc/handlers.ts";
import { countRows } from "../store/counts.ts";
import type { FaultInjector } from "./vm/deps.ts";

/** The daemon refused to start. */
export class DaemonError extends BangerError {}

const PID_LOCK_WAIT_MS = 300;

/** Options for {@linkcode runDaemon}. */
export interface DaemonOptions {
  /** The user's home, for `~/` in config. */
  home: string;
  /** Version reported to clients. @default {BANGER_VERSION} */
  version?: string;
  /** Test seam: fail VM start steps on purpose. */
  faults?: FaultInjector;
  /** Resolves when the daemon should stop (in addition to signals and `daemon.shutdown`). */
  stop?: Promise<void>;
}

/**
 * Runs the daemon until `daemon.shutdown`, SIGTERM or SIGINT.
 *
 * @returns the exit code.
 * @throws {DaemonError} when another daemon owns the runtime dir.
 * @throws {StoreError} when the store is newer than this binary.
 */
export async function runDaemon(layout: Layout, options: DaemonOptions): Promise<number> {
  const uid = Deno.uid() ?? 0;
  await ensureLayout(layout, uid);
  try {
    using _pidLock = await takePidLock(layout);
    const config = await loadConfig(layout.configFile, options.home);
    const logger = Logger.toFile(daemonLogPath(layout), config.logLevel);
    using store = Store.open(storePath(layout));
    const services = await buildServices({ layout, config, logger, store, faults: options.faults });
    return await serve(services, options);
  } catch (err) {
    // Started in the background, the daemon has no terminal: leave the reason where the
    // starting CLI looks for it.
    const hint = err instanceof BangerError && err.hint ? ` (${err.hint})` : "";
    await Deno.writeTextFile(daemonStartupLog(layout), `${errorMessage(err)}${hint}\n`, {
      append: true,
    }).catch(() => {});
    throw err;
  }
}

async function takePidLock(layout: Layout): Promise<Disposable> {
  const path = daemonPidLock(layout);
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const locked = await Promise.race([
    file.lock(true).then(() => true),
    new Promise<false>((r) => timer = setTimeout(() => r(false), PID_LOCK_WAIT_MS)),
  ]);
  clearTimeout(timer);
  if (!locked) {
    const pid = (await Deno.readTextFile(path).catch(() => "")).trim();
    file.close();
    throw new DaemonError(
      `Cannot start the daemon: another one is running${pid ? ` (pid ${pid})` : ""}`,
      { code: "conflict", hint: "banger daemon status" },
    );
  }
  await file.truncate(0);
  await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  return {
    [Symbol.dispose]: () => {
      try {
        file.unlockSync();
        file.close();
      } catch {
        // the process is exiting anyway
      }
    },
  };
}

async function serve(services: DaemonServices, options: DaemonOptions): Promise<number> {
  const { layout, logger, store, net } = services;
  const version = options.version ?? BANGER_VERSION;
  const startedAt = new Date();
  const stopped = Promise.withResolvers<number>();
  // Handlers only run once the server below exists.
  const inFlight = () => [...server.inFlight.entries()];
  const handlers = buildHandlers({
    ...services,
    status: (opId) => ({
      pid: Deno.pid,
      version,
      started_at: startedAt.toISOString(),
      uptime_ms: Date.now() - startedAt.getTime(),
      socket: daemonSocket(layout),
      dns_listen: `${services.config.dnsListen.host}:${services.config.dnsListen.port}`,
      dns_listening: net.dns.listening,
      state_dir: layout.stateDir,
      operations_in_flight: inFlight().filter(([id]) => id !== opId).length,
      counts: countRows(store),
    }),
    shutdown: (force, opId) => {
      const others = inFlight().filter(([id]) => id !== opId);
      if (others.length > 0 && !force) {
        throw new DaemonError(
          `Cannot stop the daemon: ${others.length} operation(s) in flight (${
            others.map(([id, op]) => `${op.method} ${id}`).join(", ")
          })`,
          { code: "conflict", hint: "wait for them, or: banger daemon stop --force" },
        );
      }
      // Answer first; stop right after the reply has been written.
      setTimeout(() => stopped.resolve(0), 20);
      return { pid: Deno.pid };
    },
  });
  await services.startup();
  const server: RpcServer<typeof METHODS> = new RpcServer({
    socketPath: daemonSocket(layout),
    methods: METHODS,
    handlers,
    logger,
    version,
    versionExempt: ["daemon.status", "daemon.shutdown"],
  });
  await server.listen();
  const onSignal = () => stopped.resolve(0);
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  options.stop?.then(() => stopped.resolve(0));
  logger.info("daemon started", { pid: Deno.pid, version, socket: daemonSocket(layout) });
  try {
    return await stopped.promise;
  } finally {
    Deno.removeSignalListener("SIGTERM", onSignal);
    Deno.removeSignalListener("SIGINT", onSignal);
    await server.close();
    await services.shutdown();
    logger.info("daemon stopped", { pid: Deno.pid });
  }
}
