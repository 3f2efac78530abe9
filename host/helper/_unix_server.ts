/**
 * A unix stream socket server through libc, for the root helper: `Deno.listen` does not
 * expose the accepted socket's descriptor, and SO_PEERCRED needs it. accept4(2), read(2)
 * and write(2) run as `nonblocking` FFI calls (on a worker thread), so the event loop
 * never waits on a peer; every accepted socket gets receive and send timeouts so a silent
 * peer cannot hold a worker forever; {@linkcode UnixListener.close} wakes a pending accept
 * with shutdown(2).
 *
 * errno of a worker-thread call is not readable from the main thread, so failed reads,
 * writes and accepts are reported without it.
 *
 * Folder-private: the helper server uses it.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import { BangerError } from "../errors.ts";
import { failure, libc, type PeerCredentials, peerCredentials } from "../os/libc.ts";

// <sys/socket.h>, <bits/socket_type.h>, <asm-generic/socket.h>
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_SNDTIMEO = 21;
const SHUT_RDWR = 2;
/** sizeof(struct sockaddr_un): sun_family u16 @0, sun_path[108] @2. */
export const SOCKADDR_UN_SIZE = 110;
const SUN_PATH_MAX = 108;

/** A socket call failed. */
export class UnixSocketError extends BangerError {}

/**
 * Encodes a `struct sockaddr_un` for `path` and returns it with the length to pass to
 * bind(2) (family + path + NUL). Pure.
 *
 * @throws {UnixSocketError} `invalid_argument` when the path needs more than 107 bytes.
 */
export function encodeSockaddrUn(path: string): { addr: Uint8Array; length: number } {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length === 0 || bytes.length >= SUN_PATH_MAX || bytes.includes(0)) {
    throw new UnixSocketError(
      `Cannot listen on "${path}": a unix socket path must be 1–${
        SUN_PATH_MAX - 1
      } bytes without NUL`,
      { code: "invalid_argument" },
    );
  }
  const addr = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(bytes, 2);
  return { addr, length: 2 + bytes.length + 1 };
}

/** Encodes a `struct timeval` (tv_sec i64, tv_usec i64). Pure. */
export function encodeTimeval(ms: number): Uint8Array {
  const buf = new Uint8Array(16);
  const dv = new DataView(buf.buffer);
  dv.setBigInt64(0, BigInt(Math.floor(ms / 1000)), true);
  dv.setBigInt64(8, BigInt((ms % 1000) * 1000), true);
  return buf;
}

/** One accepted connection; `using` closes it. */
export class UnixConnection implements Disposable {
  #fd: number;
  #lineEnded = false;
  /** When the whole request must have arrived: a peer dripping bytes cannot hold a slot. */
  readonly #deadline: number;
  /** The peer's credentials, read with SO_PEERCRED right after accept. */
  readonly peer: PeerCredentials;

  constructor(fd: number, timeoutMs: number) {
    this.#fd = fd;
    this.#deadline = Date.now() + timeoutMs;
    const tv = encodeTimeval(timeoutMs);
    // SAFETY: `tv` is a 16-byte local alive for each synchronous call.
    libc().setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length);
    libc().setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, tv, tv.length);
    this.peer = peerCredentials(fd);
  }

  /**
   * Reads until a `\n` (excluded) or end of stream, at most `maxBytes`, all of it within
   * the connection's timeout of its accept (each read waits only what is left of it).
   *
   * @throws {UnixSocketError} `too_large` past `maxBytes`; `unavailable` when the read
   *   fails or the time is up.
   */
  async readLine(maxBytes: number): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const left = this.#deadline - Date.now();
      if (left <= 0) {
        throw new UnixSocketError("Cannot read the request: it did not arrive in time", {
          code: "unavailable",
        });
      }
      const tv = encodeTimeval(Math.max(1, left));
      // SAFETY: `tv` is a 16-byte local alive for the synchronous call.
      libc().setsockopt(this.#fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length);
      const buf = new Uint8Array(64 * 1024);
      // SAFETY: `buf` is referenced by this frame until the worker-thread read resolves.
      const n = Number(await libc().read_nb(this.#fd, buf, BigInt(buf.length)));
      if (n < 0) {
        const late = Date.now() >= this.#deadline;
        throw new UnixSocketError(
          `Cannot read the request: ${late ? "it did not arrive in time" : "the read failed"}`,
          { code: "unavailable" },
        );
      }
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      const nl = chunk.indexOf(0x0a);
      const part = nl === -1 ? chunk : chunk.subarray(0, nl);
      if (nl !== -1) this.#lineEnded = true;
      total += part.length;
      if (total > maxBytes) {
        throw new UnixSocketError(`Cannot read the request: it is larger than ${maxBytes} bytes`, {
          code: "too_large",
        });
      }
      chunks.push(part);
      if (nl !== -1) break;
    }
    return concatBytes(chunks);
  }

  /**
   * Reads and discards the rest of the current line (up to `maxBytes`, or end of stream),
   * so closing does not reset a peer that is still sending: it would lose the answer.
   * Never throws.
   */
  async skipLine(maxBytes: number): Promise<void> {
    if (this.#lineEnded) return;
    let total = 0;
    const buf = new Uint8Array(64 * 1024);
    while (total < maxBytes) {
      // SAFETY: `buf` is referenced by this frame until the worker-thread read resolves.
      const n = Number(await libc().read_nb(this.#fd, buf, BigInt(buf.length)));
      if (n <= 0 || buf.subarray(0, n).includes(0x0a)) return;
      total += n;
    }
  }

  /** Writes all of `bytes`. @throws {UnixSocketError} `unavailable` when the peer is gone. */
  async writeAll(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const chunk = bytes.subarray(done);
      // SAFETY: `bytes` is referenced by this frame until the worker-thread write resolves.
      const n = Number(await libc().write_nb(this.#fd, chunk, BigInt(chunk.length)));
      if (n <= 0) {
        throw new UnixSocketError("Cannot write the answer: the peer went away or timed out", {
          code: "unavailable",
        });
      }
      done += n;
    }
  }

  /** Closes the socket; harmless twice. */
  close(): void {
    if (this.#fd < 0) return;
    libc().close(this.#fd);
    this.#fd = -1;
  }

  /** Closes the socket. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A listening unix stream socket.
 *
 * @example
 * ```ts
 * const listener = UnixListener.listen("/run/banger-root/helper.sock");
 * for (let c = await listener.accept(); c; c = await listener.accept()) handle(c);
 * ```
 */
export class UnixListener {
  #fd: number;
  #closing = false;
  #pending?: Promise<number>;
  /** The socket path. */
  readonly path: string;
  readonly #timeoutMs: number;

  private constructor(fd: number, path: string, timeoutMs: number) {
    this.#fd = fd;
    this.path = path;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * socket + bind + listen on `path` (which must not exist).
   *
   * @param options.timeoutMs receive/send timeout of accepted sockets. @default {30000}
   * @throws {UnixSocketError} for a path that does not fit; {@linkcode LibcError} for bind.
   */
  static listen(
    path: string,
    options: { backlog?: number; timeoutMs?: number } = {},
  ): UnixListener {
    const { addr, length } = encodeSockaddrUn(path);
    const lib = libc();
    const fd = lib.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw failure("create a unix socket for", path);
    // SAFETY: `addr` is a local SOCKADDR_UN_SIZE buffer alive for the synchronous calls.
    if (lib.bind(fd, addr, length) < 0 || lib.listen(fd, options.backlog ?? 64) < 0) {
      const err = failure("listen on", path);
      lib.close(fd);
      throw err;
    }
    return new UnixListener(fd, path, options.timeoutMs ?? 30_000);
  }

  /** Waits for the next connection; `undefined` once {@linkcode close} was called. */
  async accept(): Promise<UnixConnection | undefined> {
    while (!this.#closing) {
      this.#pending = libc().accept4_nb(this.#fd, null, null, SOCK_CLOEXEC);
      const fd = await this.#pending;
      this.#pending = undefined;
      if (this.#closing) {
        if (fd >= 0) libc().close(fd);
        return undefined;
      }
      if (fd >= 0) {
        try {
          return new UnixConnection(fd, this.#timeoutMs);
        } catch {
          libc().close(fd);
          continue;
        }
      }
      // A failed accept (e.g. the peer left first, or out of descriptors): let others run.
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  }

  /** Stops listening: wakes a pending accept, closes the socket and removes its path. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    libc().shutdown(this.#fd, SHUT_RDWR);
    await this.#pending?.catch(() => -1);
    libc().close(this.#fd);
    this.#fd = -1;
    await Deno.remove(this.path).catch(() => {});
  }
}
