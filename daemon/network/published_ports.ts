/**
 * Published ports (`vm run -p 8080:80`, `vm port publish`): a host address and port that
 * reach a port of a running guest, like Docker's and Lima's. The daemon forwards them
 * itself: a TCP listener that splices each connection to the guest, and a UDP socket that
 * relays datagrams per client. The kernel path (nft DNAT) was not taken: DNAT of
 * 127.0.0.1 needs `net.ipv4.conf.*.route_localnet=1`, a host-wide setting that lets any
 * local program's loopback traffic be routed off the host — and the owner daemon of a
 * system install could not set it anyway. `bench/` measures the forwarder against a
 * direct connection to the guest.
 *
 * Publications live in the VM's spec (they survive a daemon restart, which re-opens them
 * for running VMs); listeners exist while the VM runs.
 *
 * @module
 */

import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { BangerError, errorMessage } from "../../host/errors.ts";
import { parseIpv4 } from "../../host/net/ipv4.ts";
import type { Logger } from "../logger.ts";
import type { PortPublication } from "../../store/vms.ts";

export type { PortPublication };

/** A publication is malformed, or its host port is taken. */
export class PublishError extends BangerError {}

const UDP_IDLE_MS = 60_000;

/**
 * Parses `[ADDR:]HOST:GUEST[/udp]`, or a lone `PORT` (the same on both sides). Pure.
 *
 * @throws {PublishError} `invalid_argument`, naming the text.
 * @example
 * ```ts
 * parsePublication("8080:80"); // { address: "127.0.0.1", hostPort: 8080, guestPort: 80, proto: "tcp" }
 * ```
 */
export function parsePublication(text: string): PortPublication {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(?:(\d{1,5}):)?(\d{1,5})(?:\/(tcp|udp))?$/.exec(text);
  const bad = (why: string) =>
    new PublishError(`Cannot publish "${text}": ${why}`, {
      code: "invalid_argument",
      hint: "use [ADDR:]HOST:GUEST[/udp], e.g. -p 8080:80 or -p 0.0.0.0:5353:53/udp",
    });
  if (!m) throw bad("it is not [ADDR:]HOST:GUEST[/udp]");
  const address = m[1] ?? "127.0.0.1";
  if (parseIpv4(address) === undefined) throw bad(`"${address}" is not an IPv4 address`);
  const guestPort = Number(m[3]);
  const hostPort = m[2] !== undefined ? Number(m[2]) : guestPort;
  for (const p of [hostPort, guestPort]) {
    if (p < 1 || p > 65535) throw bad(`port ${p} is outside 1–65535`);
  }
  return { address, hostPort, guestPort, proto: m[4] === "udp" ? "udp" : "tcp" };
}

/** `127.0.0.1:8080->80/tcp`. Pure. */
export function formatPublication(p: PortPublication): string {
  return `${p.address}:${p.hostPort}->${p.guestPort}/${p.proto}`;
}

/** Whether two publications claim the same host socket. Pure. */
export function sameHostPort(a: PortPublication, b: PortPublication): boolean {
  return a.hostPort === b.hostPort && a.proto === b.proto &&
    (a.address === b.address || a.address === "0.0.0.0" || b.address === "0.0.0.0");
}

interface Open {
  publication: PortPublication;
  close(): void;
}

/** The listeners of every running VM's publications. */
export class PortForwarder {
  readonly #open = new Map<string, Open[]>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /**
   * Opens `publications` for VM `vmId` at `guestIp`; all or none (a taken port closes what
   * this call opened).
   *
   * @throws {PublishError} `conflict` naming the holder when a host port is taken.
   */
  async open(
    vm: { id: string; name: string; guestIp: string },
    publications: readonly PortPublication[],
    holders: (p: PortPublication) => string | undefined = () => undefined,
  ): Promise<void> {
    const opened: Open[] = [];
    try {
      for (const p of publications) {
        if (this.active(vm.id).some((o) => sameHostPort(o, p))) continue;
        opened.push(
          p.proto === "tcp" ? openTcp(p, vm.guestIp, this.#log) : await openUdp(p, vm.guestIp),
        );
      }
    } catch (err) {
      for (const o of opened) o.close();
      const p = publications[opened.length];
      const taken = err instanceof Deno.errors.AddrInUse ||
        (err as { code?: string }).code === "EADDRINUSE";
      const holder = p ? holders(p) : undefined;
      throw new PublishError(
        `Cannot publish ${p ? formatPublication(p) : "a port"} for "${vm.name}": ${
          taken
            ? `${p?.address}:${p?.hostPort} is in use by ${holder ?? "another program"}`
            : errorMessage(err)
        }`,
        {
          code: taken ? "conflict" : "failed_precondition",
          hint: taken && !holder && p
            ? `see who holds it: ss -lnp 'sport = :${p.hostPort}'`
            : undefined,
          cause: err,
        },
      );
    }
    this.#open.set(vm.id, [...(this.#open.get(vm.id) ?? []), ...opened]);
  }

  /** Closes VM `vmId`'s listeners (all, or those matching `only`). */
  close(vmId: string, only?: (p: PortPublication) => boolean): void {
    const all = this.#open.get(vmId) ?? [];
    const [closing, kept] = [
      all.filter((o) => !only || only(o.publication)),
      all.filter((o) => only && !only(o.publication)),
    ];
    for (const o of closing) o.close();
    if (kept.length) this.#open.set(vmId, kept);
    else this.#open.delete(vmId);
  }

  /** What VM `vmId` has open now. */
  active(vmId: string): PortPublication[] {
    return (this.#open.get(vmId) ?? []).map((o) => o.publication);
  }

  /** Closes everything (daemon shutdown). */
  closeAll(): void {
    for (const id of [...this.#open.keys()]) this.close(id);
  }
}

function openTcp(p: PortPublication, guestIp: string, log: Logger): Open {
  const listener = Deno.listen({ hostname: p.address, port: p.hostPort, transport: "tcp" });
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const client of listener) {
      conns.add(client);
      splice(client, guestIp, p.guestPort, conns).catch((err) =>
        log.debug("published connection ended", { port: p.hostPort, error: errorMessage(err) })
      );
    }
  })().catch(() => {});
  return {
    publication: p,
    close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
    },
  };
}

/** Pipes `client` to the guest and back until either side closes. */
async function splice(client: Deno.Conn, host: string, port: number, conns: Set<Deno.Conn>) {
  let guest: Deno.Conn | undefined;
  try {
    guest = await Deno.connect({ hostname: host, port });
    conns.add(guest);
    const g = guest;
    await Promise.allSettled([
      client.readable.pipeTo(g.writable),
      g.readable.pipeTo(client.writable),
    ]);
  } finally {
    for (const c of [client, guest]) {
      if (!c) continue;
      conns.delete(c);
      try {
        c.close();
      } catch {
        // already closed by a finished pipe
      }
    }
  }
}

async function openUdp(p: PortPublication, guestIp: string): Promise<Open> {
  const front = createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.bind(p.hostPort, p.address, () => {
      front.off("error", reject);
      resolve();
    });
  });
  // One upstream socket per client, so replies find their way back.
  const clients = new Map<string, { socket: Socket; timer?: ReturnType<typeof setTimeout> }>();
  const upstream = (from: RemoteInfo) => {
    const key = `${from.address}:${from.port}`;
    let entry = clients.get(key);
    if (!entry) {
      const socket = createSocket("udp4");
      socket.on("message", (msg: Uint8Array) => front.send(msg, from.port, from.address));
      socket.on("error", () => socket.close());
      entry = { socket };
      clients.set(key, entry);
    }
    clearTimeout(entry.timer);
    const e = entry;
    e.timer = setTimeout(() => {
      clients.delete(key);
      e.socket.close();
    }, UDP_IDLE_MS);
    return entry.socket;
  };
  front.on("message", (msg: Uint8Array, from: RemoteInfo) => {
    upstream(from).send(msg, p.guestPort, guestIp);
  });
  return {
    publication: p,
    close() {
      front.close();
      for (const { socket, timer } of clients.values()) {
        clearTimeout(timer);
        socket.close();
      }
      clients.clear();
    },
  };
}
