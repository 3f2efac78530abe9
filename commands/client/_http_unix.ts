/**
 * A minimal HTTP/1.1 client over a unix socket: one request per connection, the
 * response body streamed (Content-Length, chunked, or until close). Written by hand
 * because `fetch` through a unix proxy client costs ~5 ms of startup per CLI call.
 *
 * @module
 */

/** The socket could not be reached: nobody listening, or no socket file. */
export class SocketUnavailableError extends Error {
  constructor(readonly path: string, cause: unknown) {
    super(`Cannot connect to "${path}": ${cause instanceof Error ? cause.message : cause}`, {
      cause,
    });
    this.name = "SocketUnavailableError";
  }
}

/** A parsed response head plus a body reader. */
export interface UnixResponse {
  status: number;
  headers: Map<string, string>;
  /** Yields body bytes as they arrive. */
  body: AsyncIterable<Uint8Array>;
  /** Closes the connection early. */
  close(): void;
}

const CRLF = new Uint8Array([13, 10]);
const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Sends `POST path` with `body` and returns the response as soon as its head arrives.
 *
 * @throws {SocketUnavailableError} when nothing answers on the socket.
 */
export async function postUnix(
  socketPath: string,
  path: string,
  body: string,
  headers: Record<string, string>,
  signal?: AbortSignal,
): Promise<UnixResponse> {
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
    try {
      conn.close();
    } catch {
      // already closed by the peer
    }
  };
  signal?.addEventListener("abort", close, { once: true });
  try {
    const payload = enc.encode(body);
    const head = [`POST ${path} HTTP/1.1`, "host: banger", "connection: close"];
    head.push("content-type: application/json", `content-length: ${payload.length}`);
    for (const [k, v] of Object.entries(headers)) head.push(`${k}: ${v}`);
    await writeAll(conn, concat(enc.encode(head.join("\r\n") + "\r\n\r\n"), payload));
    const reader = new ByteReader(conn);
    const statusLine = await reader.line();
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "");
    if (!m) throw new Error(`Unexpected response from "${socketPath}": ${statusLine ?? "EOF"}`);
    const respHeaders = new Map<string, string>();
    for (;;) {
      const line = await reader.line();
      if (line === undefined) throw new Error("Connection closed inside response headers");
      if (line === "") break;
      const i = line.indexOf(":");
      if (i > 0) respHeaders.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    const chunked = respHeaders.get("transfer-encoding")?.toLowerCase().includes("chunked");
    const length = respHeaders.has("content-length")
      ? Number(respHeaders.get("content-length"))
      : undefined;
    const bodyIter = chunked
      ? reader.chunked()
      : length !== undefined
      ? reader.exactly(length)
      : reader.rest();
    return {
      status: Number(m[1]),
      headers: respHeaders,
      body: (async function* () {
        try {
          yield* bodyIter;
        } finally {
          signal?.removeEventListener("abort", close);
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

/** Reads a whole body into text. */
export async function readAllText(body: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const chunk of body) parts.push(chunk);
  return dec.decode(concat(...parts));
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
    this.#buf = concat(this.#buf, chunk.subarray(0, n));
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
        throw new Error("Connection closed before the response body ended");
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
      if (sizeLine === undefined) throw new Error("Connection closed inside a chunked body");
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

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.length) at += await conn.write(data.subarray(at));
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
