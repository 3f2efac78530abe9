/**
 * The one HTTP/1.1 client over unix sockets, used by the CLI's RPC client and by the
 * Firecracker API client: one request per connection, the request body sent whole with
 * `Content-Length` (Firecracker's micro_http reads a body by its length only), the
 * response body streamed (by `Content-Length`, chunked, or until close).
 *
 * Written by hand because `fetch` through a unix-socket client costs ~5 ms of start-up
 * per CLI call.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import { BangerError } from "../errors.ts";

/** The socket could not be reached: nobody listening, or no socket file. */
export class SocketUnavailableError extends Error {
  constructor(readonly path: string, cause: unknown) {
    super(`Cannot connect to "${path}": ${cause instanceof Error ? cause.message : cause}`, {
      cause,
    });
    this.name = "SocketUnavailableError";
  }
}

/** One request: its body, when there is one, goes out whole with its length. */
export interface UnixRequest {
  method: string;
  path: string;
  /** Header names and values; `host` and `content-length` are added. */
  headers?: Record<string, string>;
  body?: Uint8Array;
}

/** A parsed response head plus a body reader. */
export interface UnixResponse {
  status: number;
  /** Header names in lower case. */
  headers: Map<string, string>;
  /** Yields body bytes as they arrive; the connection closes when it ends. */
  body: AsyncIterable<Uint8Array>;
  /** Closes the connection early. */
  close(): void;
}

const CRLF = new Uint8Array([13, 10]);
const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Encodes one request (pure). A path or header that could smuggle a second line is
 * refused, so nothing a caller passes can inject a header.
 *
 * @example
 * ```ts
 * encodeHttpRequest({ method: "GET", path: "/version" });
 * ```
 * @throws {BangerError} `invalid_argument` for whitespace or control bytes in the path or
 * a header.
 */
export function encodeHttpRequest(request: UnixRequest): Uint8Array {
  const { method, path, headers = {}, body } = request;
  if (path.includes(" ") || hasControlByte(path)) {
    throw new BangerError(`Cannot request "${path}": the path contains whitespace`, {
      code: "invalid_argument",
    });
  }
  const head = [`${method} ${path} HTTP/1.1`, "Host: localhost"];
  for (const [name, value] of Object.entries(headers)) {
    if (name.includes(":") || hasControlByte(name) || hasControlByte(value)) {
      throw new BangerError(`Cannot send header "${name}": it contains a line break`, {
        code: "invalid_argument",
      });
    }
    head.push(`${name}: ${value}`);
  }
  if (body) head.push(`Content-Length: ${body.length}`);
  const headBytes = enc.encode(head.join("\r\n") + "\r\n\r\n");
  return body ? concatBytes([headBytes, body]) : headBytes;
}

/** CR, LF and the other C0 controls or DEL: what could end a request line early. */
function hasControlByte(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * Sends `request` on `socketPath` and returns the response as soon as its head arrives.
 * Aborting `signal` closes the connection, mid-body included.
 *
 * @throws {SocketUnavailableError} when nothing answers on the socket.
 */
export async function requestUnix(
  socketPath: string,
  request: UnixRequest,
  signal?: AbortSignal,
): Promise<UnixResponse> {
  const bytes = encodeHttpRequest(request);
  signal?.throwIfAborted();
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socketPath });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.ConnectionRefused) {
      throw new SocketUnavailableError(socketPath, err);
    }
    throw err;
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    signal?.removeEventListener("abort", close);
    try {
      conn.close();
    } catch {
      // already closed by the peer
    }
  };
  signal?.addEventListener("abort", close, { once: true });
  try {
    for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    const reader = new ByteReader(conn);
    const statusLine = await reader.line();
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "");
    if (!m) throw new Error(`Unexpected response from "${socketPath}": ${statusLine ?? "EOF"}`);
    const status = Number(m[1]);
    const headers = new Map<string, string>();
    for (;;) {
      const line = await reader.line();
      if (line === undefined) throw new Error("The connection closed inside the response head");
      if (line === "") break;
      const i = line.indexOf(":");
      if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    const body = bodyOf(reader, status, request.method, headers);
    return {
      status,
      headers,
      body: (async function* () {
        try {
          yield* body;
        } finally {
          close();
        }
      })(),
      close,
    };
  } catch (err) {
    close();
    if (signal?.aborted) throw signal.reason;
    throw err;
  }
}

/** `POST path` with a JSON text body, as the daemon's RPC routes take it. */
export function postJson(
  socketPath: string,
  path: string,
  json: string,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<UnixResponse> {
  return requestUnix(socketPath, {
    method: "POST",
    path,
    headers: { "Connection": "close", "Content-Type": "application/json", ...headers },
    body: enc.encode(json),
  }, signal);
}

/** Reads a whole body into text. */
export async function readAllText(body: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const chunk of body) parts.push(chunk);
  return dec.decode(concatBytes(parts));
}

/** Splits a streamed body into lines. */
export async function* lines(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, nl);
      pending = pending.slice(nl + 1);
    }
  }
  if (pending.trim() !== "") yield pending;
}

/** Which bytes are the body (RFC 9112 §6.3): none for 1xx/204/304 or HEAD. */
function bodyOf(
  reader: ByteReader,
  status: number,
  method: string,
  headers: Map<string, string>,
): AsyncGenerator<Uint8Array> {
  if (status < 200 || status === 204 || status === 304 || method === "HEAD") {
    return reader.exactly(0);
  }
  if (headers.get("transfer-encoding")?.toLowerCase().includes("chunked")) return reader.chunked();
  const length = headers.get("content-length");
  if (length === undefined) return reader.rest();
  if (!/^\d+$/.test(length)) throw new Error(`Bad Content-Length "${length}"`);
  return reader.exactly(Number(length));
}

/** Buffered reads off a connection; consumed bytes are dropped, so reads stay linear. */
class ByteReader {
  #buf: Uint8Array = new Uint8Array(0);
  #eof = false;
  constructor(private readonly conn: Deno.Conn) {}

  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(64 * 1024);
    let n: number | null;
    try {
      n = await this.conn.read(chunk);
    } catch (err) {
      if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) {
        n = null;
      } else throw err;
    }
    if (n === null) {
      this.#eof = true;
      return false;
    }
    const got = chunk.subarray(0, n);
    this.#buf = this.#buf.length === 0 ? got : concatBytes([this.#buf, got]);
    return true;
  }

  async line(): Promise<string | undefined> {
    for (;;) {
      const i = indexOf(this.#buf, CRLF);
      if (i >= 0) {
        const text = dec.decode(this.#buf.subarray(0, i));
        this.#buf = this.#buf.subarray(i + 2);
        return text;
      }
      if (!(await this.#fill())) return undefined;
    }
  }

  async *exactly(n: number): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (this.#buf.length === 0 && !(await this.#fill())) {
        throw new Error("The connection closed before the response body ended");
      }
      const take = Math.min(left, this.#buf.length);
      yield this.#buf.subarray(0, take);
      this.#buf = this.#buf.subarray(take);
      left -= take;
    }
  }

  async *rest(): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.#buf.length > 0) {
        yield this.#buf;
        this.#buf = new Uint8Array(0);
      }
      if (!(await this.#fill())) return;
    }
  }

  async *chunked(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const sizeLine = await this.line();
      if (sizeLine === undefined) throw new Error("The connection closed inside a chunked body");
      const size = parseInt(sizeLine.split(";")[0], 16);
      if (!Number.isFinite(size)) throw new Error(`Bad chunk size "${sizeLine}"`);
      if (size === 0) {
        for (;;) {
          const trailer = await this.line();
          if (trailer === undefined || trailer === "") return;
        }
      }
      yield* this.exactly(size);
      await this.line();
    }
  }
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
