/**
 * The RPC protocol shared by the daemon's server and the CLI's client: how a method is
 * described, the routes, headers, error body and the NDJSON stream events.
 *
 * HTTP/1.1 over the daemon's unix socket. `POST /v1/<method>` with a JSON body; the
 * answer is JSON (`200`), or for streaming methods `application/x-ndjson` where each line
 * is a {@linkcode StreamEvent} and the last one is `result` or `error`. Errors are
 * `{code, message, op_id, hint?}` with the status from {@linkcode STATUS_BY_CODE}.
 *
 * Imports only the schema kit, so the CLI can load it cheaply.
 *
 * @module
 */

import type { ErrorCode } from "../../host/errors.ts";
import type { Schema } from "../../host/schema.ts";

/** banger's version; CLI and daemon compare it on every call. */
export const BANGER_VERSION = "0.1.0";

/** Request header carrying the client's version; responses carry the daemon's. */
export const VERSION_HEADER = "x-banger-version";
/** Response header carrying the request's operation id. */
export const OP_ID_HEADER = "x-banger-op-id";
/** Largest accepted request body. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** Path prefix of every method route. */
export const ROUTE_PREFIX = "/v1/";

/** Describes one RPC method: its name, schemas and whether it streams progress. */
export interface MethodDef<Req, Res, N extends string = string> {
  /** Route name, e.g. `vm.create` (served at `POST /v1/vm.create`). */
  name: N;
  /** Validates the request body. */
  request: Schema<Req>;
  /** Validates the result. */
  response: Schema<Res>;
  /** Streams {@linkcode ProgressEvent}s before the result. */
  stream: boolean;
}

/** Declares a method. */
export function method<const N extends string, Req, Res>(
  name: N,
  request: Schema<Req>,
  response: Schema<Res>,
  options: { stream?: boolean } = {},
): MethodDef<Req, Res, N> {
  return { name, request, response, stream: options.stream ?? false };
}

/** Builds the name → method table the server routes on. */
// deno-lint-ignore no-explicit-any
export function methodTable<const T extends readonly MethodDef<any, any>[]>(
  ...defs: T
): { [D in T[number] as D["name"]]: D } {
  return Object.fromEntries(defs.map((d) => [d.name, d])) as {
    [D in T[number] as D["name"]]: D;
  };
}

/** Any method table. */
// deno-lint-ignore no-explicit-any
export type MethodTable = Record<string, MethodDef<any, any>>;
/** The request type of a method. */
export type RequestOf<D> = D extends MethodDef<infer Req, infer _Res> ? Req : never;
/** The result type of a method. */
export type ResponseOf<D> = D extends MethodDef<infer _Req, infer Res> ? Res : never;

/** The JSON body of every RPC error. */
export interface ErrorBody {
  code: ErrorCode | "bad_request" | "unknown_method" | "version_mismatch";
  message: string;
  op_id: string;
  hint?: string;
}

/** Progress of a long operation. */
export interface ProgressEvent {
  event: "progress";
  /** Short stable stage name, e.g. `root_disk`. */
  stage: string;
  /** Human text for the stage. */
  message: string;
  /** Bytes or items done, for progress bars. */
  done?: number;
  /** Total expected, when known. */
  total?: number;
  /** Milliseconds since the operation began. */
  elapsed_ms: number;
}

/** One line of a streamed response. */
export type StreamEvent =
  | ProgressEvent
  | { event: "result"; result: unknown }
  | { event: "error"; error: ErrorBody };

/** HTTP status for each error code. */
export const STATUS_BY_CODE: Record<ErrorBody["code"], number> = {
  bad_request: 400,
  invalid_argument: 400,
  unknown_method: 404,
  not_found: 404,
  conflict: 409,
  failed_precondition: 409,
  version_mismatch: 409,
  permission_denied: 403,
  too_large: 413,
  cancelled: 499,
  timeout: 504,
  unavailable: 503,
  internal: 500,
};
