/**
 * The daemon's authoritative DNS server for the `.vm` zone: `<name>.vm` → the VM's guest
 * IPv4 address, over UDP and (RFC 7766 length-prefixed) TCP on the same address. The VM
 * service calls {@linkcode DnsServer.set} / {@linkcode DnsServer.remove} on start, stop and
 * delete, and reconcile calls {@linkcode DnsServer.replaceAll}; answers change at once.
 *
 * @module
 */

import dgram from "node:dgram";
import net from "node:net";
import { errorMessage } from "../../host/errors.ts";
import { parseIpv4 } from "../../host/net/ipv4.ts";
import { answerDnsQuery, DNS_ZONE } from "./answer.ts";
import { DnsError } from "./wire.ts";
import type { Logger } from "../logger.ts";

export { DnsError };

/** Where the server listens: `dns_listen` from the config. */
export interface DnsListen {
  /** An IPv4 address. */
  host: string;
  /** A port; 0 picks a free one (tests), readable afterwards from {@linkcode DnsServer.address}. */
  port: number;
}

/** Options for {@linkcode DnsServer}. */
export interface DnsServerOptions {
  /** TTL of answers and of negative answers, in seconds. @default {5} */
  ttl?: number;
  /** Where failures that do not stop the server are reported. @default {no logging} */
  logger?: Logger;
}

/** The bound address, once {@linkcode DnsServer.start} has resolved. */
export interface DnsAddress {
  host: string;
  port: number;
  /** Whether TCP is served too; false when only the UDP port could be bound. */
  tcp: boolean;
}

/** A VM name: a DNS label, lower-case, no normalisation (DESIGN.md invariant 10). */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** TCP connections served at once; more are closed on accept. */
const MAX_TCP_CONNECTIONS = 64;
/** A TCP connection with no complete query for this long is closed. */
const TCP_IDLE_MS = 10_000;
/** Attempts to find a port free for both UDP and TCP when asked for port 0. */
const EPHEMERAL_ATTEMPTS = 8;

const BIND_REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use (EADDRINUSE)",
  EACCES: "permission denied (EACCES)",
  EADDRNOTAVAIL: "no such local address (EADDRNOTAVAIL)",
};

function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function bindError(listen: DnsListen, proto: string, err: unknown): DnsError {
  const code = errnoCode(err) ?? "";
  const example = `dns_listen = "${listen.host}:${listen.port === 42070 ? 42071 : 42070}"`;
  return new DnsError(
    `Cannot serve DNS on "${listen.host}:${listen.port}" (${proto}): ${
      BIND_REASONS[code] ?? errorMessage(err)
    }`,
    {
      code: "unavailable",
      cause: err,
      hint: code === "EACCES"
        ? `set dns_listen in config.toml to a port above 1023, e.g. ${example}`
        : `stop what uses it, or set dns_listen in config.toml to a free address, e.g. ${example}`,
    },
  );
}

/**
 * The `.vm` zone and the sockets that serve it. Records live in memory only; reconcile
 * rebuilds them from the store at daemon start.
 *
 * @example
 * ```ts
 * await using dns = new DnsServer({ logger });
 * dns.replaceAll(runningVms.map((vm) => [vm.name, vm.guestIp]));
 * await dns.start(config.dnsListen);
 * dns.set("dev", "172.16.0.2"); // dig @127.0.0.1 -p 42069 dev.vm → 172.16.0.2
 * ```
 */
export class DnsServer implements AsyncDisposable {
  // name → dotted quad; every name is a LABEL and every address parses. Changes bump #serial.
  readonly #records = new Map<string, string>();
  #serial = Math.floor(Date.now() / 1000) >>> 0;
  readonly #ttl: number;
  readonly #logger?: Logger;
  // Set together by start(), cleared together by stop(); #starting fences concurrent starts.
  #starting = false;
  #udp?: dgram.Socket;
  #tcp?: net.Server;
  #address?: DnsAddress;
  readonly #connections = new Set<net.Socket>();

  constructor(options: DnsServerOptions = {}) {
    const ttl = options.ttl ?? 5;
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > 0x7fffffff) {
      throw new RangeError(`Cannot create a DNS server with TTL ${ttl}: expected whole seconds`);
    }
    this.#ttl = ttl;
    this.#logger = options.logger;
  }

  /** Whether the server is listening. */
  get listening(): boolean {
    return this.#address !== undefined;
  }

  /** The bound address, or `undefined` before `start` and after `stop`. */
  get address(): DnsAddress | undefined {
    return this.#address ? { ...this.#address } : undefined;
  }

  /** A copy of the records, name → address. */
  get records(): Map<string, string> {
    return new Map(this.#records);
  }

  /**
   * Binds UDP, then TCP on the same port, and starts answering. When TCP cannot be bound
   * on a fixed port, UDP alone is served and a warning is logged.
   *
   * @throws {DnsError} when already listening, or the UDP port cannot be bound (the message
   * names the address; the hint names `dns_listen`).
   */
  async start(listen: DnsListen): Promise<void> {
    if (this.#address || this.#starting) {
      const where = this.#address ? `"${this.#address.host}:${this.#address.port}"` : "";
      throw new DnsError(
        `Cannot start the DNS server on "${listen.host}:${listen.port}": it ${
          where ? `already listens on ${where}` : "is already starting"
        }`,
        { code: "failed_precondition" },
      );
    }
    if (parseIpv4(listen.host) === undefined) {
      throw new DnsError(
        `Cannot serve DNS on "${listen.host}:${listen.port}": "${listen.host}" is not an IPv4 address`,
        { code: "invalid_argument", hint: 'set dns_listen in config.toml, e.g. "127.0.0.1:42069"' },
      );
    }
    this.#starting = true;
    try {
      await this.#bind(listen);
    } finally {
      this.#starting = false;
    }
  }

  async #bind(listen: DnsListen): Promise<void> {
    for (let attempt = 1;; attempt++) {
      const udp = await this.#bindUdp(listen);
      const port = udp.address().port;
      try {
        this.#tcp = await this.#bindTcp(listen.host, port);
      } catch (err) {
        if (listen.port === 0 && attempt < EPHEMERAL_ATTEMPTS) {
          await new Promise<void>((resolve) => udp.close(() => resolve()));
          continue;
        }
        this.#logger?.warn("DNS over TCP unavailable; serving UDP only", {
          error: bindError({ host: listen.host, port }, "TCP", err).message,
        });
      }
      this.#udp = udp;
      this.#address = { host: listen.host, port, tcp: this.#tcp !== undefined };
      return;
    }
  }

  /** Closes every socket; the port can be bound again once this resolves. Idempotent. */
  async stop(): Promise<void> {
    const [udp, tcp] = [this.#udp, this.#tcp];
    [this.#udp, this.#tcp, this.#address] = [undefined, undefined, undefined];
    for (const c of this.#connections) c.destroy();
    this.#connections.clear();
    await Promise.all([
      udp && new Promise<void>((resolve) => udp.close(() => resolve())),
      tcp && new Promise<void>((resolve) => tcp.close(() => resolve())),
    ]);
  }

  /** Stops the server. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /**
   * Adds or replaces `<name>.vm`; queries see it at once.
   *
   * @throws {DnsError} when `name` is not a lower-case DNS label or `ipv4` is not an address.
   */
  set(name: string, ipv4: string): void {
    DnsServer.#validate(name, ipv4);
    if (this.#records.get(name) === ipv4) return;
    this.#records.set(name, ipv4);
    this.#bump();
  }

  /** Removes `<name>.vm`; returns whether it existed. */
  remove(name: string): boolean {
    const existed = this.#records.delete(name);
    if (existed) this.#bump();
    return existed;
  }

  /**
   * Replaces every record at once (reconcile). Nothing changes when any entry is invalid.
   *
   * @throws {DnsError} naming the first invalid entry.
   */
  replaceAll(
    records: Iterable<readonly [string, string]> | Readonly<Record<string, string>>,
  ): void {
    const entries = Symbol.iterator in records
      ? [...(records as Iterable<readonly [string, string]>)]
      : Object.entries(records);
    for (const [name, ipv4] of entries) DnsServer.#validate(name, ipv4);
    this.#records.clear();
    for (const [name, ipv4] of entries) this.#records.set(name, ipv4);
    this.#bump();
  }

  /**
   * The address `name` resolves to, as a query would see it: `dev`, `dev.vm` and `DEV.vm.`
   * are the same name.
   */
  lookup(name: string): string | undefined {
    const lower = name.toLowerCase().replace(/\.$/, "");
    const label = lower.endsWith(`.${DNS_ZONE}`) ? lower.slice(0, -DNS_ZONE.length - 1) : lower;
    return this.#records.get(label);
  }

  static #validate(name: string, ipv4: string): void {
    if (!LABEL.test(name)) {
      throw new DnsError(
        `Cannot publish DNS name "${name}.${DNS_ZONE}": "${name}" is not a DNS label (1-63 of a-z, 0-9 and "-", no leading or trailing "-")`,
        { code: "invalid_argument" },
      );
    }
    if (parseIpv4(ipv4) === undefined) {
      throw new DnsError(
        `Cannot publish DNS name "${name}.${DNS_ZONE}": "${ipv4}" is not an IPv4 address`,
        { code: "invalid_argument" },
      );
    }
  }

  #bump(): void {
    this.#serial = (this.#serial + 1) >>> 0;
  }

  /** Never throws: a hostile packet is answered with an error code or dropped. */
  #answer(packet: Uint8Array): Uint8Array | undefined {
    try {
      return answerDnsQuery(packet, {
        lookup: (label) => this.#records.get(label),
        serial: this.#serial,
        ttl: this.#ttl,
      });
    } catch (err) {
      this.#logger?.warn("DNS query failed", { error: errorMessage(err) });
      return undefined;
    }
  }

  #bindUdp(listen: DnsListen): Promise<dgram.Socket> {
    const udp = dgram.createSocket({ type: "udp4" });
    return new Promise((resolve, reject) => {
      udp.once("error", (err) => {
        udp.close();
        reject(bindError(listen, "UDP", err));
      });
      udp.bind(listen.port, listen.host, () => {
        udp.removeAllListeners("error");
        udp.on("error", (err) => this.#logger?.warn("DNS socket error", { error: err.message }));
        udp.on("message", (msg: Uint8Array, from: dgram.RemoteInfo) => {
          const reply = this.#answer(msg);
          if (!reply) return;
          try {
            udp.send(reply, from.port, from.address, () => {});
          } catch {
            // A source port of 0 makes send throw; such a sender cannot get an answer.
          }
        });
        resolve(udp);
      });
    });
  }

  #bindTcp(host: string, port: number): Promise<net.Server> {
    const tcp = net.createServer((socket) => this.#serveTcp(socket));
    return new Promise((resolve, reject) => {
      tcp.once("error", (err) => {
        tcp.close();
        reject(err);
      });
      tcp.listen({ host, port }, () => {
        tcp.removeAllListeners("error");
        tcp.on("error", (err) => this.#logger?.warn("DNS TCP error", { error: err.message }));
        resolve(tcp);
      });
    });
  }

  /** RFC 7766: each message is prefixed by its 16-bit length; several may be pipelined. */
  #serveTcp(socket: net.Socket): void {
    socket.on("error", () => {});
    if (this.#connections.size >= MAX_TCP_CONNECTIONS) {
      socket.destroy();
      return;
    }
    this.#connections.add(socket);
    socket.on("close", () => this.#connections.delete(socket));
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    let pending = new Uint8Array(0);
    socket.on("data", (chunk: Uint8Array) => {
      const joined = new Uint8Array(pending.length + chunk.length);
      joined.set(pending);
      joined.set(chunk, pending.length);
      let at = 0;
      while (joined.length - at >= 2) {
        const length = (joined[at] << 8) | joined[at + 1];
        if (joined.length - at - 2 < length) break;
        const reply = this.#answer(joined.subarray(at + 2, at + 2 + length));
        at += 2 + length;
        if (!reply) continue;
        const framed = new Uint8Array(reply.length + 2);
        framed.set([reply.length >> 8, reply.length & 0xff]);
        framed.set(reply, 2);
        socket.write(framed);
      }
      pending = joined.slice(at);
    });
  }
}
