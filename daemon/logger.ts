/**
 * The daemon's structured log: one JSON object per line with `time`, `level`, `op_id`,
 * `msg` and fields. A child logger carries the `op_id` of the request that caused it, so
 * every line an operation writes can be found with `grep op-1a2b3c4d`.
 *
 * @module
 */

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Extra structured fields on a line. */
export type LogFields = Record<string, unknown>;

/** Where lines go. */
export interface LogSink {
  write(line: string): void;
}

/**
 * A leveled JSON-lines logger.
 *
 * @example
 * ```ts
 * const log = Logger.toFile("/state/daemon.log", "info");
 * log.child({ op_id: "op-1a2b" }).info("vm started", { vm: "dev" });
 * ```
 */
export class Logger {
  readonly #sink: LogSink;
  readonly #min: number;
  readonly #bound: LogFields;

  constructor(sink: LogSink, level: LogLevel = "info", bound: LogFields = {}) {
    this.#sink = sink;
    this.#min = RANK[level];
    this.#bound = bound;
  }

  /**
   * A logger appending to `path` (created 0600). Once the file passes `maxBytes` it is
   * renamed to `<path>.1` (replacing the previous one) and a new file is started, so a
   * long-lived daemon keeps at most about twice `maxBytes` of log.
   */
  static toFile(path: string, level: LogLevel, maxBytes = DEFAULT_LOG_BYTES): Logger {
    return new Logger(new RotatingFile(path, maxBytes), level);
  }

  /** A logger that drops everything. */
  static discard(): Logger {
    return new Logger({ write: () => {} }, "error");
  }

  /** A logger with `fields` added to every line. */
  child(fields: LogFields): Logger {
    return new Logger(this.#sink, levelOf(this.#min), { ...this.#bound, ...fields });
  }

  debug(msg: string, fields?: LogFields): void {
    this.#log("debug", msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    this.#log("info", msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    this.#log("warn", msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    this.#log("error", msg, fields);
  }

  #log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (RANK[level] < this.#min) return;
    const line = {
      time: new Date().toISOString(),
      level,
      ...this.#bound,
      msg,
      ...fields,
    };
    this.#sink.write(JSON.stringify(line, replacer) + "\n");
  }
}

/** Size at which the daemon log is rotated. */
const DEFAULT_LOG_BYTES = 16 * 1024 * 1024;

/** An append-only file sink that keeps one rotated generation (`<path>.1`). */
class RotatingFile implements LogSink {
  readonly #path: string;
  readonly #maxBytes: number;
  readonly #enc = new TextEncoder();
  #file: Deno.FsFile;
  #size: number;

  constructor(path: string, maxBytes: number) {
    this.#path = path;
    this.#maxBytes = maxBytes;
    this.#file = this.#open();
    this.#size = this.#file.statSync().size;
  }

  write(line: string): void {
    const bytes = this.#enc.encode(line);
    if (this.#size > 0 && this.#size + bytes.length > this.#maxBytes) this.#rotate();
    this.#file.writeSync(bytes);
    this.#size += bytes.length;
  }

  #rotate(): void {
    try {
      Deno.renameSync(this.#path, `${this.#path}.1`);
    } catch {
      // Keep appending to the current file rather than lose lines.
      return;
    }
    this.#file.close();
    this.#file = this.#open();
    this.#size = 0;
  }

  #open(): Deno.FsFile {
    return Deno.openSync(this.#path, { append: true, create: true, mode: 0o600 });
  }
}

function levelOf(rank: number): LogLevel {
  return (Object.entries(RANK).find(([, r]) => r === rank)?.[0] ?? "info") as LogLevel;
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (typeof value === "bigint") return value.toString();
  return value;
}
