/**
 * The daemon process: takes the single-instance lock, opens config, log and store, wires
 * the services to the RPC server and runs until told to stop. Guests are never children
 * of this process's lifetime: stopping the daemon leaves running VMs running.
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
import { countRows } from "../store/counts.ts";
import { BANGER_VERSION, type DaemonStatus, METHODS } from "./api.ts";
import { type Config, loadConfig } from "./config.ts";
import { Logger } from "./logger.ts";
import { type Handlers, RpcServer } from "./rpc_server.ts";

/** The daemon refused to start. */
export class DaemonError extends BangerError {}

const PID_LOCK_WAIT_MS = 300;

/** Options for {@linkcode runDaemon}. */
export interface DaemonOptions {
  /** The user's home, for `~/` in config. */
  home: string;
  /** Version reported to clients. @default {BANGER_VERSION} */
  version?: string;
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
    const daemon = new Daemon({ layout, config, logger, store, version: options.version });
    return await daemon.serve();
  } catch (err) {
    // Started in the background, the daemon has no terminal: leave the reason where the
    // starting CLI looks for it.
    await Deno.writeTextFile(daemonStartupLog(layout), `${errorMessage(err)}\n`, {
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

/** Everything the daemon holds while it runs. */
export interface DaemonParts {
  layout: Layout;
  config: Config;
  logger: Logger;
  store: Store;
  version?: string;
}

/** Wires services to the RPC server. */
export class Daemon {
  readonly #parts: DaemonParts;
  readonly #startedAt = new Date();
  readonly #stopped = Promise.withResolvers<number>();
  #server?: RpcServer<typeof METHODS>;

  constructor(parts: DaemonParts) {
    this.#parts = parts;
  }

  /** Listens until asked to stop; returns the exit code. */
  async serve(): Promise<number> {
    const { layout, logger } = this.#parts;
    const version = this.#parts.version ?? BANGER_VERSION;
    this.#server = new RpcServer({
      socketPath: daemonSocket(layout),
      methods: METHODS,
      handlers: this.#handlers(version),
      logger,
      version,
      versionExempt: ["daemon.status", "daemon.shutdown"],
    });
    await this.#server.listen();
    const onSignal = () => this.#stop(0);
    Deno.addSignalListener("SIGTERM", onSignal);
    Deno.addSignalListener("SIGINT", onSignal);
    logger.info("daemon started", { pid: Deno.pid, version, socket: daemonSocket(layout) });
    try {
      return await this.#stopped.promise;
    } finally {
      Deno.removeSignalListener("SIGTERM", onSignal);
      Deno.removeSignalListener("SIGINT", onSignal);
      await this.#server.close();
      logger.info("daemon stopped", { pid: Deno.pid });
    }
  }

  #stop(code: number): void {
    this.#stopped.resolve(code);
  }

  #handlers(version: string): Handlers<typeof METHODS> {
    const { layout, config, store } = this.#parts;
    return {
      "daemon.status": (): Promise<DaemonStatus> => {
        const counts = countRows(store);
        return Promise.resolve({
          pid: Deno.pid,
          version,
          started_at: this.#startedAt.toISOString(),
          uptime_ms: Date.now() - this.#startedAt.getTime(),
          socket: daemonSocket(layout),
          dns_listen: `${config.dnsListen.host}:${config.dnsListen.port}`,
          dns_listening: false,
          state_dir: layout.stateDir,
          // This status call itself is in flight; report the others.
          operations_in_flight: Math.max(0, (this.#server?.inFlight.size ?? 1) - 1),
          counts,
        });
      },
      "daemon.shutdown": (req, ctx) => {
        const others = [...(this.#server?.inFlight ?? new Map()).entries()]
          .filter(([id]) => id !== ctx.opId);
        if (others.length > 0 && !req.force) {
          throw new DaemonError(
            `Cannot stop the daemon: ${others.length} operation(s) in flight (${
              others.map(([id, op]) => `${op.method} ${id}`).join(", ")
            })`,
            { code: "conflict", hint: "wait for them, or: banger daemon stop --force" },
          );
        }
        ctx.log.info("shutdown requested", { force: req.force ?? false });
        // Answer first; stop right after the reply has been written.
        setTimeout(() => this.#stop(0), 20);
        return Promise.resolve({ pid: Deno.pid });
      },
    };
  }
}
