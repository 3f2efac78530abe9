/**
 * Whether this instance's guest network is free on the host, read from what every user
 * may read (`/sys/class/net`, `/proc/net/route`), before the daemon touches anything:
 * a bridge of that name held by another banger instance (its alias says whose, see
 * `host/instance.ts`) or by other interfaces, or a route of another interface into the
 * guest CIDR, would make two instances answer for the same addresses.
 *
 * @module
 */

import { type Instance, parseBridgeAlias, tapIndex } from "../instance.ts";
import { type Cidr, cidrSize, formatCidr, parseCidr } from "./ipv4.ts";
import { listProcDirIfExists as list, readProcFileIfExists } from "../os/procfs.ts";

/** The network an instance wants. */
export interface NetworkClaim {
  /** Its instance. */
  instance: Instance;
  /** `bridge_name`. */
  bridgeName: string;
  /** `cidr`. */
  cidr: string;
}

/** One IPv4 route of `/proc/net/route`. */
export interface Route {
  /** The interface it goes through. */
  iface: string;
  /** Its destination network. */
  network: Cidr;
}

/**
 * Parses `/proc/net/route` (addresses in host byte order, as hex). Pure.
 *
 * @example
 * ```ts
 * parseRoutes("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n" +
 *   "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n");
 * // [{ iface: "eth0", network: { network: 0xc0000200, prefixLength: 24 } }]
 * ```
 */
export function parseRoutes(text: string): Route[] {
  const routes: Route[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const dest = swap(parseInt(f[1], 16));
    const mask = swap(parseInt(f[7], 16));
    const prefixLength = popcount(mask);
    routes.push({ iface: f[0], network: { network: (dest & mask) >>> 0, prefixLength } });
  }
  return routes;
}

/**
 * What holds this instance's network, as a sentence, or `undefined` when it is free.
 *
 * @param roots where sysfs and procfs are (tests pass fake trees).
 */
export function findNetworkConflict(
  claim: NetworkClaim,
  roots: { sys?: string; proc?: string } = {},
): string | undefined {
  const sys = roots.sys ?? "/sys";
  const routes = parseRoutes(readProcFileIfExists(`${roots.proc ?? "/proc"}/net/route`) ?? "");
  const bridge = describeBridge(claim.bridgeName, claim.instance, sys);
  if (bridge) return bridge;
  const wanted = parseCidr(claim.cidr);
  if (!wanted) return undefined; // config validation reports it
  for (const route of routes) {
    if (route.iface === claim.bridgeName || route.network.prefixLength === 0) continue;
    if (!overlaps(route.network, wanted)) continue;
    const owner = ownerOf(route.iface, sys);
    return `${formatCidr(route.network)} is routed through "${route.iface}"${
      owner ? ` (the bridge of ${owner})` : ""
    }, which overlaps cidr ${claim.cidr}`;
  }
  return undefined;
}

/**
 * A /24 in 172.16.0.0/12 that no route touches, for the hint of a refusal. Pure.
 */
export function freeCidr(routes: readonly Route[]): string | undefined {
  for (let third = 0; third < 256 * 16; third++) {
    const candidate = { network: (0xac100000 + third * 256) >>> 0, prefixLength: 24 };
    if (!routes.some((r) => r.network.prefixLength > 0 && overlaps(r.network, candidate))) {
      return formatCidr(candidate);
    }
  }
  return undefined;
}

function describeBridge(name: string, self: Instance, sys: string): string | undefined {
  const dir = `${sys}/class/net/${name}`;
  if (readProcFileIfExists(`${dir}/type`) === undefined) return undefined; // no such interface
  const ports = list(`${dir}/brif`);
  const strangers = ports.filter((p) => tapIndex(self, p) === undefined);
  const owner = ownerOf(name, sys);
  const alias = parseBridgeAlias(readProcFileIfExists(`${dir}/ifalias`) ?? "");
  const theirs = alias !== undefined && alias.stateDir !== self.stateDir;
  if (!theirs && strangers.length === 0) return undefined;
  if (theirs && ports.length === 0) return undefined; // a stale bridge nobody uses: adopt it
  return `bridge "${name}" ${
    theirs ? `belongs to ${owner}` : "is in use"
  } and carries ${strangers.length} interface(s) that are not this instance's (${
    strangers.slice(0, 3).join(", ")
  }${strangers.length > 3 ? ", …" : ""})`;
}

/** "banger instance <id> (state dir …)" when `iface` is a banger bridge with an alias. */
function ownerOf(iface: string, sys: string): string | undefined {
  const alias = parseBridgeAlias(readProcFileIfExists(`${sys}/class/net/${iface}/ifalias`) ?? "");
  return alias ? `banger instance ${alias.id} (state dir ${alias.stateDir})` : undefined;
}

function overlaps(a: Cidr, b: Cidr): boolean {
  const aEnd = a.network + cidrSize(a);
  const bEnd = b.network + cidrSize(b);
  return a.network < bEnd && b.network < aEnd;
}

function swap(n: number): number {
  return (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | (n >>> 24)) >>> 0;
}

function popcount(n: number): number {
  let count = 0;
  for (let v = n >>> 0; v; v >>>= 1) count += v & 1;
  return count;
}
