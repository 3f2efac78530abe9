/**
 * What every command handler receives: output writers, the RPC client, the daemon's
 * paths, and the local operations `main.ts` injects (running the daemon in the
 * foreground, doctor). Handlers never read globals.
 *
 * @module
 */

import type { DoctorReport } from "../daemon/api/daemon.ts";
import type { RpcClient } from "./client/rpc_client.ts";

/** A failure on the CLI side (not reported by the daemon). Exit code 1. */
export class CliError extends Error {
  readonly hint?: string;
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "CliError";
    this.hint = options.hint;
  }
}

/** Ends the CLI with a specific exit code and nothing printed (e.g. a guest command's). */
export class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
    this.name = "ExitCode";
  }
}

/** Operations that run inside the CLI process, provided by `main.ts`. */
export interface LocalOps {
  /** Runs the daemon in this process until it is told to stop; returns the exit code. */
  runDaemon(): Promise<number>;
  /** Runs the host checks of `banger doctor`. */
  doctor(): Promise<DoctorReport>;
}

/** The CLI's world. */
export interface CliEnv {
  /** Writes to stdout. */
  out(text: string): void;
  /** Writes to stderr. */
  err(text: string): void;
  /** Whether stdout is a terminal (tables and progress bars vs plain lines). */
  stdoutIsTty: boolean;
  /** Whether stderr is a terminal. */
  stderrIsTty: boolean;
  /** Talks to the daemon. */
  client: RpcClient;
  /** Daemon paths. */
  paths: {
    socket: string;
    startLock: string;
    startupLog: string;
    runtimeDir: string;
    pidLock: string;
  };
  /** How to launch `banger daemon` in the background. */
  daemonCommand(): { program: string; args: string[] };
  /** Creates the runtime directory (0700, ownership checked). */
  ensureRuntimeDir(): Promise<void>;
  /** In-process operations. */
  local: LocalOps;
}
