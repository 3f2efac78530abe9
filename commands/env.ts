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

/** `vm run`'s exit code when banger itself failed (docker run's 125), not the command. */
export const EXIT_BANGER_FAILED = 125;
/** The exit code after ^C (128 + SIGINT), as a shell reports it. */
export const EXIT_INTERRUPTED = 130;

/** An error printed as any other, ending the CLI with `code` instead of 1. */
export class FailedWith extends Error {
  constructor(readonly code: number, readonly error: unknown) {
    super(error instanceof Error ? error.message : String(error), { cause: error });
    this.name = "FailedWith";
  }
}

/** How a terminal shows the CLI's stderr: its width, and whether to colour. */
export interface TerminalStyle {
  /** Columns of the terminal; lines redrawn in place are cut to fit. */
  columns?: number;
  /** ANSI colour (a TTY without `NO_COLOR`). */
  color?: boolean;
}

/** Operations that run inside the CLI process, provided by `main.ts`. */
export interface LocalOps {
  /** Runs the daemon in this process until it is told to stop; returns the exit code. */
  runDaemon(): Promise<number>;
  /** Runs the host checks of `banger doctor`. */
  doctor(): Promise<DoctorReport>;
  /**
   * Reads and validates a config file (default: the one in use) as the daemon would,
   * returning every setting with its defaults filled in, spelled as in the file.
   *
   * @throws {BangerError} naming the file, the key and what is allowed.
   */
  readConfig(file?: string): Promise<ConfigReport>;
}

/** What {@linkcode LocalOps.readConfig} found. */
export interface ConfigReport {
  path: string;
  /** False when there is no file: every setting is a default. */
  exists: boolean;
  settings: Record<string, unknown>;
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
  /** How stderr's terminal shows output: width, colour (off with `NO_COLOR`). */
  style: TerminalStyle;
  /** Whether stdin is a terminal: a question can be asked only then. */
  stdinIsTty: boolean;
  /** Reads one line of stdin without its newline; `null` at end of input. */
  readLine(): Promise<string | null>;
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
