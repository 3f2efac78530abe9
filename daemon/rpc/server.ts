/**
 * The RPC server: one route per method on the daemon's unix socket, bodies validated at
 * the boundary, errors mapped to statuses, NDJSON progress for long methods, and an
 * `AbortSignal` per request that fires when the client goes away.
 *
 * @module
 */

import { concatBytes } from "../../host/bytes.ts";
import { BangerError, errorMessage } from "../../host/errors.ts";
import { SchemaError } from "../../host/schema.ts";
import type { Logger } from "../logger.ts";
import { opIdScope } from "../../host/op_id_scope.ts";
import {
  type ErrorBody,
  MAX_BODY_BYTES,
  type MethodTable,
  OP_ID_HEADER,
  type ProgressEvent,
  type RequestOf,
  type ResponseOf,
  ROUTE_PREFIX,
  STATUS_BY_CODE,
  type StreamEvent,
  VERSION_HEADER,
} from "../api/protocol.ts";

/** What a handler gets besides its request: identity, cancellation, logging, progress. */
export interface OpContext {
  /** The request's operation id; in every log line and error it causes. */
  readonly opId: string;
  /** Fires when the client disconnects or the daemon shuts down. */
  readonly signal: AbortSignal;
  /** A logger bound to `op_id`. */
  readonly log: Logger;
  /** Reports progress; a no-op for methods that do not stream. */
  progress(stage: string, message: string, extra?: { done?: number; total?: number }): void;
}

/** Implements one method. */
export type Handler<D> = (request: RequestOf<D>, ctx: OpContext) => Promise<ResponseOf<D>>;
/** Implementations for every method of a table. */
export type Handlers<T extends MethodTable> = { [K in keyof T]: Handler<T[K]> };

/** Options for {@linkcode RpcServer}. */
export interface RpcServerOptions<T extends MethodTable> {
  /** Unix socket path; created 0600. */
  socketPath: string;
  /** The method table (schemas). */
  methods: T;
  /** The implementations. */
  handlers: Handlers<T>;
  /** Base logger; each request gets a child with its `op_id`. */
  logger: Logger;
  /** Version sent in every response. */
  version: string;
  /**
   * Methods answered whatever the client's version, so a CLI can inspect and replace a
   * daemon of another version. Every other method refuses a mismatched client.
   */
  versionExempt?: readonly string[];
}

/** Makes a fresh operation id such as `op-9f2c41aa`. */
export function newOpId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return "op-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

type AnyHandler = (request: unknown, ctx: OpContext) => Promise<unknown>;

/** One request being served. */
interface RunningOp {
  opId: string;
  log: Logger;
  controller: AbortController;
  headers: Record<string, string>;
  started: number;
  finish: (outcome: string, error?: ErrorBody) => void;
}

/** A failure carrying the wire code it should be reported with. */
class RequestError extends Error {
  constructor(readonly code: ErrorBody["code"], message: string) {
    super(message);
  }
}

/**
 * Serves a method table over HTTP/1.1 on a unix socket.
 *
 * @example
 * ```ts
 * const server = new RpcServer({ socketPath, methods: METHODS, handlers, logger, version });
 * await server.listen();
 * ```
 */
export class RpcServer<T extends MethodTable> {
  readonly #options: RpcServerOptions<T>;
  readonly #inFlight = new Map<string, { method: string; controller: AbortController }>();
  #server?: Deno.HttpServer<Deno.UnixAddr>;

  constructor(options: RpcServerOptions<T>) {
    this.#options = options;
  }

  /** Operations currently running, by op id. */
  get inFlight(): ReadonlyMap<string, { method: string }> {
    return this.#inFlight;
  }

  /** Starts listening. The caller has already made sure no other daemon owns the socket. */
  async listen(): Promise<void> {
    const path = this.#options.socketPath;
    await Deno.remove(path).catch(() => {});
    const ready = Promise.withResolvers<void>();
    this.#server = Deno.serve(
      { path, onListen: () => ready.resolve(), onError: (err) => this.#crash(err) },
      (req) => this.#handle(req),
    );
    await ready.promise;
    await Deno.chmod(path, 0o600);
  }

  /** Stops accepting, aborts running operations and waits for the server to close. */
  async close(): Promise<void> {
    for (const { controller } of this.#inFlight.values()) {
      controller.abort(new BangerError("The daemon is shutting down", { code: "unavailable" }));
    }
    await this.#server?.shutdown();
    await Deno.remove(this.#options.socketPath).catch(() => {});
  }

  #crash(err: unknown): Response {
    this.#options.logger.error("rpc server error", { error: errorMessage(err) });
    return new Response("internal error", { status: 500 });
  }

  async #handle(req: Request): Promise<Response> {
    const opId = newOpId();
    const log = this.#options.logger.child({ op_id: opId });
    const url = new URL(req.url);
    const name = url.pathname.startsWith(ROUTE_PREFIX)
      ? url.pathname.slice(ROUTE_PREFIX.length)
      : "";
    const headers = {
      [VERSION_HEADER]: this.#options.version,
      [OP_ID_HEADER]: opId,
    };
    const def = Object.hasOwn(this.#options.methods, name)
      ? this.#options.methods[name]
      : undefined;
    if (!def) {
      const reason = req.method === "POST" && url.pathname.startsWith(ROUTE_PREFIX)
        ? `Unknown method "${name}"`
        : `Unknown route "${req.method} ${url.pathname}"`;
      log.warn("rpc rejected", { path: url.pathname, reason });
      return errorResponse({ code: "unknown_method", message: reason, op_id: opId }, headers);
    }
    if (req.method !== "POST") {
      return errorResponse(
        { code: "bad_request", message: `Method "${name}" must be called with POST`, op_id: opId },
        headers,
      );
    }

    const clientVersion = req.headers.get(VERSION_HEADER);
    if (
      clientVersion !== null && clientVersion !== this.#options.version &&
      !(this.#options.versionExempt ?? []).includes(name)
    ) {
      return errorResponse({
        code: "version_mismatch",
        message: `The daemon runs banger ${this.#options.version} but this CLI is ${clientVersion}`,
        op_id: opId,
        hint: "banger restarts an older daemon when it is idle; or run: banger daemon stop",
      }, headers);
    }

    let request: unknown;
    try {
      request = def.request.parse(await readJsonBody(req), "");
    } catch (err) {
      const body = toErrorBody(err, opId);
      log.warn("rpc rejected", { method: name, error: body.message });
      return errorResponse(body, headers);
    }

    const controller = new AbortController();
    this.#inFlight.set(opId, { method: name, controller });
    const started = performance.now();
    log.debug("rpc started", { method: name });
    const finish = (outcome: string, error?: ErrorBody) => {
      this.#inFlight.delete(opId);
      const ms = Math.round(performance.now() - started);
      if (error && STATUS_BY_CODE[error.code] >= 500) {
        log.error("rpc failed", { method: name, ms, error: error.message });
      } else {
        log.info(`rpc ${outcome}`, {
          method: name,
          ms,
          ...(error ? { error: error.message } : {}),
        });
      }
    };
    const handler = this.#options.handlers[name] as AnyHandler;
    return def.stream
      ? this.#stream(handler, request, { opId, log, controller, headers, started, finish })
      : await this.#unary(req, handler, request, {
        opId,
        log,
        controller,
        headers,
        started,
        finish,
      });
  }

  async #unary(
    req: Request,
    handler: AnyHandler,
    request: unknown,
    op: RunningOp,
  ): Promise<Response> {
    const onDisconnect = () =>
      op.controller.abort(new BangerError("The client disconnected", { code: "cancelled" }));
    req.signal.addEventListener("abort", onDisconnect, { once: true });
    try {
      const ctx: OpContext = {
        opId: op.opId,
        signal: op.controller.signal,
        log: op.log,
        progress: () => {},
      };
      const result = await opIdScope.run(op.opId, () => handler(request, ctx));
      op.finish("done");
      return Response.json(result, { headers: op.headers });
    } catch (err) {
      const body = toErrorBody(err, op.opId, op.log);
      op.finish("failed", body);
      return errorResponse(body, op.headers);
    } finally {
      req.signal.removeEventListener("abort", onDisconnect);
    }
  }

  #stream(handler: AnyHandler, request: unknown, op: RunningOp): Response {
    const enc = new TextEncoder();
    let closed = false;
    const body = new ReadableStream<Uint8Array>({
      start: (sink) => {
        const send = (event: StreamEvent) => {
          if (!closed) sink.enqueue(enc.encode(JSON.stringify(event) + "\n"));
        };
        let lastStage: string | undefined;
        const ctx: OpContext = {
          opId: op.opId,
          signal: op.controller.signal,
          log: op.log,
          progress: (stage, message, extra) => {
            const elapsed = Math.round(performance.now() - op.started);
            if (stage !== lastStage) op.log.debug("stage", { stage, elapsed_ms: elapsed });
            lastStage = stage;
            const event: ProgressEvent = {
              event: "progress",
              stage,
              message,
              elapsed_ms: elapsed,
              ...extra,
            };
            send(event);
          },
        };
        opIdScope.run(op.opId, () => handler(request, ctx)).then(
          (result) => {
            op.finish("done");
            send({ event: "result", result });
          },
          (err) => {
            const error = toErrorBody(err, op.opId, op.log);
            op.finish("failed", error);
            send({ event: "error", error });
          },
        ).finally(() => {
          if (!closed) {
            closed = true;
            sink.close();
          }
        });
      },
      cancel: () => {
        closed = true;
        op.controller.abort(new BangerError("The client disconnected", { code: "cancelled" }));
      },
    });
    return new Response(body, {
      headers: { ...op.headers, "content-type": "application/x-ndjson" },
    });
  }
}

async function readJsonBody(req: Request): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    for await (const chunk of req.body) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) throw tooLarge();
      chunks.push(chunk);
    }
  }
  const text = new TextDecoder().decode(concatBytes(chunks));
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new RequestError(
      "bad_request",
      `Cannot parse request body as JSON: ${errorMessage(err)}`,
    );
  }
}

function tooLarge(): RequestError {
  return new RequestError(
    "too_large",
    `Cannot accept request body: it is larger than ${MAX_BODY_BYTES} bytes`,
  );
}

/** Maps anything a handler threw to the wire error body. */
export function toErrorBody(err: unknown, opId: string, log?: Logger): ErrorBody {
  if (err instanceof RequestError) return { code: err.code, message: err.message, op_id: opId };
  if (err instanceof SchemaError) {
    return { code: "bad_request", message: `Invalid request: ${err.message}`, op_id: opId };
  }
  if (err instanceof BangerError) {
    const body: ErrorBody = { code: err.code, message: err.message, op_id: opId };
    if (err.hint) body.hint = err.hint;
    if (err.code === "internal") log?.error("internal error", { stack: err.stack });
    return body;
  }
  log?.error("unexpected error", { stack: err instanceof Error ? err.stack : String(err) });
  return { code: "internal", message: `Internal error: ${errorMessage(err)}`, op_id: opId };
}

function errorResponse(body: ErrorBody, headers: Record<string, string>): Response {
  return Response.json(body, { status: STATUS_BY_CODE[body.code], headers });
}
