/**
 * Host side of a Firecracker vsock: connect to the VM's vsock unix socket, send
 * `CONNECT <port>\n`, expect `OK <host port>\n`, then the connection is a byte stream to
 * the guest's listener on that port (the guest agent listens on one).
 *
 * Firecracker closes the connection when nothing listens on the port in the guest.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import { BangerError } from "../errors.ts";

/** A vsock connection could not be opened or broke. */
export class VsockError extends BangerError {}

/** Options for {@linkcode connectVsock}. */
export interface VsockConnectOptions {
  /** Longest wait for the connection and the `OK` line. @default {5000} */
  timeoutMs?: number;
  /** Abandons the handshake. */
  signal?: AbortSignal;
}

const MAX_HANDSHAKE_LINE = 64;
const DEFAULT_MAX_LINE = 64 * 1024;
const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * An open stream to one guest port. Bytes the guest sent right after the `OK` line are
 * kept and returned first.
 */
export class VsockConnection implements Disposable {
  /** The guest port. */
  readonly port: number;
  /** The host-side port Firecracker assigned (the number after `OK`). */
  readonly hostPort: number;
  readonly #conn: Deno.UnixConn;
  #pending: Uint8Array;
  #closed = false;

  constructor(conn: Deno.UnixConn, port: number, hostPort: number, pending: Uint8Array) {
    this.#conn = conn;
    this.port = port;
    this.hostPort = hostPort;
    this.#pending = pending;
  }

  /** Reads into `buf`; `null` at end of stream. */
  async read(buf: Uint8Array): Promise<number | null> {
    if (this.#pending.length > 0) {
      const n = Math.min(buf.length, this.#pending.length);
      buf.set(this.#pending.subarray(0, n));
      this.#pending = this.#pending.subarray(n);
      return n;
    }
    return await this.#conn.read(buf);
  }

  /** Writes all of `data` (a string is sent as UTF-8). */
  async write(data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off));
  }

  /**
   * Reads one `\n`-terminated line (without the newline).
   *
   * @returns `undefined` at end of stream before any byte of a line.
   * @throws {VsockError} when the line is longer than `maxBytes` or the stream ends inside it.
   */
  async readLine(maxBytes: number = DEFAULT_MAX_LINE): Promise<string | undefined> {
    const line = await readUntilNewline((b) => this.read(b), maxBytes, (rest) => {
      this.#pending = concatBytes([rest, this.#pending]);
    });
    if (line.kind === "eof") return undefined;
    if (line.kind !== "line") {
      throw new VsockError(`Cannot read a line from vsock port ${this.port}: ${line.kind}`, {
        code: "unavailable",
      });
    }
    return line.text;
  }

  /** Closes the connection; calling it twice is harmless. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Opens a stream to `port` in the guest through the VMM's vsock socket `udsPath`.
 *
 * @throws {VsockError} `unavailable` when the socket is missing or the guest does not
 *   listen on `port`, `timeout` when the handshake takes longer than `timeoutMs`.
 * @example
 * ```ts
 * using agent = await connectVsock(`${vmDir}/vsock.sock`, 1024);
 * await agent.write("health\n");
 * const reply = await agent.readLine();
 * ```
 */
export async function connectVsock(
  udsPath: string,
  port: number,
  options: VsockConnectOptions = {},
): Promise<VsockConnection> {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff_ffff) {
    throw new VsockError(`Cannot connect to vsock port ${port}: it must be 0 to 4294967295`, {
      code: "invalid_argument",
    });
  }
  const timeoutMs = options.timeoutMs ?? 5000;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const what = `Cannot connect to vsock port ${port} through "${udsPath}"`;
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: udsPath });
  } catch (err) {
    throw new VsockError(`${what}: the VMM's vsock socket does not answer`, {
      code: "unavailable",
      cause: err,
    });
  }
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for (let off = 0, req = enc.encode(`CONNECT ${port}\n`); off < req.length;) {
      off += await conn.write(req.subarray(off));
    }
    let pending: Uint8Array = new Uint8Array(0);
    const line = await readUntilNewline((b) => conn.read(b), MAX_HANDSHAKE_LINE, (rest) => {
      pending = rest;
    });
    const ok = line.kind === "line" ? /^OK (\d+)$/.exec(line.text) : null;
    if (!ok) {
      throw new VsockError(
        line.kind === "eof"
          ? `${what}: nothing listens on that port in the guest (the VMM closed the connection)`
          : `${what}: unexpected handshake answer ${
            line.kind === "line" ? JSON.stringify(line.text) : line.kind
          }`,
        { code: "unavailable" },
      );
    }
    signal.removeEventListener("abort", onAbort);
    return new VsockConnection(conn, port, Number(ok[1]), pending);
  } catch (err) {
    signal.removeEventListener("abort", onAbort);
    try {
      conn.close();
    } catch {
      // closed by the abort handler
    }
    if (options.signal?.aborted) {
      throw new VsockError(`${what}: the request was cancelled`, { code: "cancelled", cause: err });
    }
    if (timeout.aborted) {
      throw new VsockError(`${what}: no answer within ${timeoutMs} ms`, {
        code: "timeout",
        cause: err,
      });
    }
    if (err instanceof VsockError) throw err;
    throw new VsockError(`${what}: ${err instanceof Error ? err.message : String(err)}`, {
      code: "unavailable",
      cause: err,
    });
  }
}

type LineResult =
  | { kind: "line"; text: string }
  | { kind: "eof" }
  | { kind: "the stream ended inside a line" }
  | { kind: "the line is too long" };

async function readUntilNewline(
  read: (buf: Uint8Array) => Promise<number | null>,
  maxBytes: number,
  keepRest: (rest: Uint8Array) => void,
): Promise<LineResult> {
  let acc: Uint8Array = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  for (;;) {
    const nl = acc.indexOf(10);
    if (nl >= 0) {
      keepRest(acc.slice(nl + 1));
      return { kind: "line", text: dec.decode(acc.subarray(0, nl)) };
    }
    if (acc.length > maxBytes) return { kind: "the line is too long" };
    let n: number | null;
    try {
      n = await read(chunk);
    } catch (err) {
      if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.ConnectionReset) {
        n = null;
      } else throw err;
    }
    if (n === null) {
      return acc.length === 0 ? { kind: "eof" } : { kind: "the stream ended inside a line" };
    }
    acc = concatBytes([acc, chunk.subarray(0, n)]);
  }
}
