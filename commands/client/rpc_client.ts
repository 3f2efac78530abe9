/**
 * The CLI's RPC client: calls a daemon method, validates the result, forwards progress
 * events, and turns error bodies into {@linkcode RpcError}s that keep the `op_id`.
 *
 * @module
 */

import {
  BANGER_VERSION,
  type ErrorBody,
  type MethodDef,
  OP_ID_HEADER,
  type ProgressEvent,
  ROUTE_PREFIX,
  type StreamEvent,
  VERSION_HEADER,
} from "../../daemon/api/protocol.ts";
import { lines, postJson, readAllText } from "../../host/net/http_unix.ts";

export { SocketUnavailableError } from "../../host/net/http_unix.ts";

/** An error the daemon reported. */
export class RpcError extends Error {
  readonly code: ErrorBody["code"];
  readonly opId: string;
  readonly hint?: string;
  /** The daemon's version, when it told us. */
  readonly daemonVersion?: string;

  constructor(body: ErrorBody, daemonVersion?: string) {
    super(body.message);
    this.name = "RpcError";
    this.code = body.code;
    this.opId = body.op_id;
    this.hint = body.hint;
    this.daemonVersion = daemonVersion;
  }
}

/** Options of one call. */
export interface CallOptions {
  /** Closing the connection makes the daemon abort the operation. */
  signal?: AbortSignal;
  /** Receives progress events of streaming methods. */
  onProgress?: (event: ProgressEvent) => void;
}

/** Talks to one daemon socket. */
export class RpcClient {
  constructor(readonly socketPath: string, readonly version: string = BANGER_VERSION) {}

  /**
   * Calls `method` and returns its validated result.
   *
   * @throws {RpcError} for errors the daemon reported.
   * @throws {SocketUnavailableError} when no daemon answers.
   */
  async call<Req, Res>(
    def: MethodDef<Req, Res>,
    request: Req,
    options: CallOptions = {},
  ): Promise<Res> {
    const method = def.name;
    const res = await postJson(
      this.socketPath,
      ROUTE_PREFIX + method,
      JSON.stringify(request),
      { [VERSION_HEADER]: this.version },
      options.signal,
    );
    const daemonVersion = res.headers.get(VERSION_HEADER);
    const contentType = res.headers.get("content-type") ?? "";
    if (contentType.startsWith("application/x-ndjson")) {
      for await (const line of lines(res.body)) {
        const event = JSON.parse(line) as StreamEvent;
        if (event.event === "progress") options.onProgress?.(event);
        else if (event.event === "error") throw new RpcError(event.error, daemonVersion);
        else return def.response.parse(event.result, "result");
      }
      throw new Error(`The daemon closed the "${method}" stream without a result`);
    }
    const text = await readAllText(res.body);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`The daemon sent a non-JSON answer to "${method}" (HTTP ${res.status})`);
    }
    if (res.status !== 200) {
      const err = body as ErrorBody;
      throw new RpcError({
        code: err.code ?? "internal",
        message: err.message ?? `HTTP ${res.status}`,
        op_id: err.op_id ?? res.headers.get(OP_ID_HEADER) ?? "",
        hint: err.hint,
      }, daemonVersion);
    }
    return def.response.parse(body, "result");
  }
}
