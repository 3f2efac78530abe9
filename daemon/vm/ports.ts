/**
 * `vm ports`: what a guest listens on, from its agent (`ss`), shown as `<name>.vm:<port>`
 * endpoints with the owning processes, plus an `http://<name>.vm:<port>/` link for each
 * TCP port that answers an HTTP request from the daemon within a short timeout. Sockets
 * bound to both IPv4 and IPv6 show once. Inspecting only: no lock, no state change.
 *
 * @module
 */

import { Semaphore } from "../locks.ts";
import { BangerError } from "../../host/errors.ts";
import type { VmRecord } from "../../store/vms.ts";
import type { PortView } from "../api/workspace.ts";
import type { VmDeps } from "./deps.ts";
import { assertStatus } from "./vm_service.ts";
import { guestRef } from "./stop.ts";

/** A guest agent answer that is not the `ports` JSON. */
export class PortsError extends BangerError {}

/** One socket as the agent reports it. */
export interface AgentSocket {
  proto: string;
  address: string;
  port: number;
  processes: string[];
}

/** How long an HTTP probe may take. */
const PROBE_TIMEOUT_MS = 1500;
/** HTTP probes in flight at once. */
export const PROBE_CONCURRENCY = 8;
/** The most ports probed for HTTP in one listing. */
const MAX_PROBED = 256;

/**
 * The listening ports of a running VM, with HTTP links where a port answered HTTP.
 *
 * @throws {VmStateError} unless the VM is running.
 * @throws {PortsError} when the agent's answer is not the expected JSON.
 * @throws {SshError} when the agent cannot be reached.
 */
export async function guestPorts(
  vm: VmRecord,
  deps: VmDeps,
  o: { probeTimeoutMs?: number } = {},
): Promise<PortView[]> {
  assertStatus(vm, ["running"], "list the ports of");
  const answer = await deps.guest.agent(guestRef(vm), "ports", deps.driver(vm.spec.vmm).hasVsock);
  const views = portViews(vm.name, parseAgentPorts(answer, vm.name));
  const timeout = o.probeTimeoutMs ?? PROBE_TIMEOUT_MS;
  // The guest decides how many ports it reports: probe a bounded number, a few at a time.
  const slots = new Semaphore(PROBE_CONCURRENCY, "an HTTP probe slot");
  const probed = views.filter((v) => v.proto === "tcp" && !v.local_only).slice(0, MAX_PROBED);
  await Promise.all(probed.map(async (v) => {
    using _slot = await slots.acquire();
    if (await answersHttp(vm.guestIp, v.port, `${vm.name}.vm`, timeout)) {
      v.url = `http://${vm.name}.vm:${v.port}/`;
    }
  }));
  return views;
}

/**
 * Parses the agent's `ports` answer, leniently (unknown fields are ignored).
 *
 * @throws {PortsError} when it has no `ports` list.
 */
export function parseAgentPorts(answer: unknown, name: string): AgentSocket[] {
  const ports = (answer as { ports?: unknown } | null)?.ports;
  if (!Array.isArray(ports)) {
    throw new PortsError(`Cannot read the ports of "${name}": the guest agent sent no port list`, {
      code: "unavailable",
      hint: `banger vm ssh ${name} -- ss -tlnpu`,
    });
  }
  const out: AgentSocket[] = [];
  for (const p of ports) {
    const e = p as Record<string, unknown>;
    if (typeof e?.port !== "number" || typeof e.proto !== "string") continue;
    const procs = Array.isArray(e.processes) ? e.processes : [];
    out.push({
      proto: e.proto,
      address: typeof e.address === "string" ? e.address : "",
      port: e.port,
      processes: procs.map((x) => (x as { name?: unknown })?.name).filter((
        n,
      ): n is string => typeof n === "string"),
    });
  }
  return out;
}

/** Merges sockets of one proto and port (IPv4 + IPv6) into sorted views. Pure. */
export function portViews(name: string, sockets: readonly AgentSocket[]): PortView[] {
  const byKey = new Map<string, PortView>();
  for (const s of sockets) {
    const key = `${s.proto}/${s.port}`;
    const local = isLoopback(s.address);
    const seen = byKey.get(key);
    if (!seen) {
      byKey.set(key, {
        proto: s.proto,
        address: s.address,
        port: s.port,
        endpoint: `${name}.vm:${s.port}`,
        processes: [...new Set(s.processes)],
        local_only: local,
      });
      continue;
    }
    if (seen.local_only && !local) seen.address = s.address;
    seen.local_only &&= local;
    seen.processes = [...new Set([...seen.processes, ...s.processes])];
  }
  return [...byKey.values()].sort((a, b) => a.port - b.port || a.proto.localeCompare(b.proto));
}

function isLoopback(address: string): boolean {
  return address.startsWith("127.") || address === "::1" || address === "localhost";
}

/**
 * Whether `host:port` answers a plain HTTP/1.0 request with an HTTP status line within
 * `timeoutMs`. A raw socket, so nothing is pooled or left open.
 */
export async function answersHttp(
  host: string,
  port: number,
  hostHeader: string,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Promise.withResolvers<false>();
  const timer = setTimeout(() => deadline.resolve(false), timeoutMs);
  let conn: Deno.TcpConn | undefined;
  let late = false;
  const attempt = (async () => {
    const c = await Deno.connect({ hostname: host, port });
    if (late) {
      c.close();
      return false;
    }
    conn = c;
    await c.write(new TextEncoder().encode(`GET / HTTP/1.0\r\nHost: ${hostHeader}\r\n\r\n`));
    const buf = new Uint8Array(8);
    let n = 0;
    while (n < 5) {
      const r = await c.read(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    return new TextDecoder().decode(buf.subarray(0, n)).startsWith("HTTP/");
  })().catch(() => false);
  try {
    return await Promise.race([attempt, deadline.promise]);
  } finally {
    late = true;
    clearTimeout(timer);
    try {
      conn?.close();
    } catch {
      // closed already
    }
  }
}
