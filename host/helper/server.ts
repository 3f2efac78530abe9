/**
 * {@linkcode HelperServer}: the root helper's server. It listens on a unix socket owned by
 * the owner uid (mode 0600, in a root-owned 0711 directory), reads the peer's
 * credentials with SO_PEERCRED on every connection and serves only uid 0 and the owner;
 * everyone else gets one `permission_denied` answer and the connection is closed. Each
 * connection carries one request (`host/helper/protocol.ts`), whose arguments are parsed
 * with `parseOpArgs` before the `PrivilegedOps` implementation (which checks every path
 * and name again) runs it. One JSON log line per call names the op, the op id forwarded
 * by the owner daemon, the peer and the outcome (routine `/proc` reads excepted: the
 * owner daemon polls them to watch VMMs).
 *
 * @module
 */

import { type UnixConnection, UnixListener } from "./_unix_server.ts";
import { BangerError, errorMessage } from "../errors.ts";
import {
  HELPER_PING,
  type HelperErrorBody,
  type HelperPing,
  helperRequestSchema,
  type HelperResponse,
  isHelperOp,
  MAX_HELPER_REQUEST_BYTES,
} from "./protocol.ts";
import { parseOpArgs, type PrivilegedOps } from "../privileged/privileged_ops.ts";
import { SchemaError } from "../schema.ts";

/** How much of an oversized request is read and dropped so its sender gets the answer. */
const DRAIN_LIMIT = 64 * 1024 * 1024;

/** Options of {@linkcode HelperServer}. */
export interface HelperServerOptions {
  /** The socket path (its directory must exist, root-owned 0711). */
  socketPath: string;
  /** What the helper runs. */
  ops: PrivilegedOps;
  /** The one unprivileged uid served (from the install record); also owns the socket. */
  ownerUid: number;
  /** The socket's group. */
  ownerGid: number;
  /** Reported by `ping`. */
  version: string;
  /** Receives one JSON line per call. @default {writes to stdout} */
  log?: (line: string) => void;
  /** Connections served at once; more are answered `unavailable`. @default {32} */
  maxConnections?: number;
  /** Read/write timeout per connection. @default {30000} */
  timeoutMs?: number;
}

/**
 * Serves `PrivilegedOps` to the owner daemon.
 *
 * @example
 * ```ts
 * const server = new HelperServer({ socketPath, ops, ownerUid: 1000, ownerGid: 1000, version });
 * await server.listen();
 * ```
 */
export class HelperServer {
  readonly #o: HelperServerOptions;
  #listener?: UnixListener;
  #loop?: Promise<void>;
  readonly #active = new Set<Promise<void>>();

  constructor(options: HelperServerOptions) {
    this.#o = options;
  }

  /**
   * Binds the socket (replacing a stale one), hands it to the owner with mode 0600 and
   * starts serving.
   *
   * @throws {BangerError} `conflict` when something other than a socket is at the path.
   */
  async listen(): Promise<void> {
    const path = this.#o.socketPath;
    const existing = await Deno.lstat(path).catch(() => undefined);
    if (existing) {
      if (!existing.isSocket) {
        throw new BangerError(
          `Cannot listen on "${path}": something other than a socket is there`,
          {
            code: "conflict",
          },
        );
      }
      await Deno.remove(path);
    }
    // bind creates the socket 0755 under the usual umask: nobody else may connect (that
    // needs write permission) before the chmod below.
    const listener = UnixListener.listen(path, { timeoutMs: this.#o.timeoutMs });
    await Deno.chown(path, this.#o.ownerUid, this.#o.ownerGid);
    await Deno.chmod(path, 0o600);
    this.#listener = listener;
    this.#loop = this.#acceptLoop(listener);
  }

  /** Stops accepting and waits for the calls in progress. */
  async close(): Promise<void> {
    await this.#listener?.close();
    await this.#loop;
    await Promise.allSettled([...this.#active]);
  }

  async #acceptLoop(listener: UnixListener): Promise<void> {
    for (let conn = await listener.accept(); conn; conn = await listener.accept()) {
      const c = conn;
      if (this.#active.size >= (this.#o.maxConnections ?? 32)) {
        void this.#refuse(c, "unavailable", "the helper is busy", "helper rpc refused");
        continue;
      }
      const task = this.#serve(c).finally(() => this.#active.delete(task));
      this.#active.add(task);
    }
  }

  async #refuse(
    conn: UnixConnection,
    code: HelperErrorBody["code"],
    why: string,
    msg: string,
  ): Promise<void> {
    using c = conn;
    this.#line("warn", msg, { peer_uid: c.peer.uid, peer_pid: c.peer.pid, error: why });
    // Take the request off the socket first: closing on unread data resets the peer
    // before it can read the refusal.
    await c.readLine(MAX_HELPER_REQUEST_BYTES).catch(() => undefined);
    await this.#answer(c, {
      ok: false,
      error: { code, message: `Cannot serve the request: ${why}` },
    });
  }

  async #serve(conn: UnixConnection): Promise<void> {
    const { uid, pid } = conn.peer;
    if (uid !== 0 && uid !== this.#o.ownerUid) {
      return await this.#refuse(
        conn,
        "permission_denied",
        `uid ${uid} is neither root nor the owner (uid ${this.#o.ownerUid})`,
        "helper rpc refused",
      );
    }
    using c = conn;
    const started = performance.now();
    let op = "?";
    let opId = "?";
    let response: HelperResponse;
    try {
      const text = decodeRequest(await c.readLine(MAX_HELPER_REQUEST_BYTES));
      const request = helperRequestSchema.parse(JSON.parse(text), "");
      op = request.op;
      opId = request.op_id;
      response = { ok: true, result: await this.#dispatch(request.op, request.args) };
    } catch (err) {
      response = { ok: false, error: toHelperError(err) };
    }
    const ms = Math.round(performance.now() - started);
    const fields = { op, op_id: opId, peer_uid: uid, peer_pid: pid, ms };
    if (isRoutineQuery(op, response)) {
      // liveness polls: logging each would flood the journal
    } else if (response.ok) this.#line("info", "helper rpc completed", fields);
    else {
      const level = response.error.code === "internal" ? "error" : "warn";
      this.#line(level, "helper rpc failed", {
        ...fields,
        code: response.error.code,
        error: response.error.message,
      });
    }
    await this.#answer(c, response);
    if (!response.ok && response.error.code === "too_large") await c.skipLine(DRAIN_LIMIT);
  }

  #dispatch(op: string, args: unknown): Promise<unknown> {
    if (op === HELPER_PING) {
      const ping: HelperPing = {
        pid: Deno.pid,
        version: this.#o.version,
        owner_uid: this.#o.ownerUid,
      };
      return Promise.resolve(ping);
    }
    if (!isHelperOp(op)) {
      throw new BangerError(`Cannot run "${op}": the helper does not offer it`, {
        code: "invalid_argument",
        hint: "ext4 work runs in the owner daemon, not in the helper",
      });
    }
    const parsed = parseOpArgs(op, args ?? {});
    const method = this.#o.ops[op] as (a: unknown) => Promise<unknown>;
    return method.call(this.#o.ops, parsed);
  }

  async #answer(c: UnixConnection, response: HelperResponse): Promise<void> {
    try {
      await c.writeAll(new TextEncoder().encode(JSON.stringify(response) + "\n"));
    } catch {
      // the peer left; its call is logged already
    }
  }

  #line(level: string, msg: string, fields: Record<string, unknown>): void {
    const line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) + "\n";
    if (this.#o.log) this.#o.log(line);
    else Deno.stdout.writeSync(new TextEncoder().encode(line));
  }
}

/**
 * Answers that are not logged: successful reads (`readProcFile`, `probeHost`) and a
 * `readProcFile` of a process that is gone. The owner daemon polls these while it waits
 * for a VMM it did not launch to exit; every action, refusal and failure is logged.
 */
function isRoutineQuery(op: string, response: HelperResponse): boolean {
  if (op !== "readProcFile" && op !== "probeHost") return false;
  return response.ok || (op === "readProcFile" && response.error.code === "not_found");
}

function decodeRequest(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new BangerError("Cannot parse the request: it is not UTF-8", {
      code: "invalid_argument",
    });
  }
}

/** Maps anything an operation threw to the wire error. Pure. */
export function toHelperError(err: unknown): HelperErrorBody {
  if (err instanceof BangerError) {
    return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  }
  if (err instanceof SchemaError) {
    return { code: "invalid_argument", message: `Cannot parse the request: ${err.message}` };
  }
  if (err instanceof SyntaxError) {
    return { code: "invalid_argument", message: `Cannot parse the request: ${err.message}` };
  }
  if (err instanceof RangeError) return { code: "invalid_argument", message: err.message };
  return { code: "internal", message: `Internal error: ${errorMessage(err)}` };
}
