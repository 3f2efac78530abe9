/**
 * The per-VM guest configuration file, `/root/.banger/guest.env` on the work disk
 * (`/dev/vdb`), which the daemon rewrites before every start and the guest reads at boot:
 * first from the initramfs (network up before the image's init runs, even in images
 * without iproute2), then from `banger-network.service`.
 *
 * Format: one `KEY=VALUE` per line, no quotes, no spaces, only these keys:
 *
 * | key | value |
 * |---|---|
 * | `BANGER_VM_ID` | the VM's id (`[a-z0-9-]`) |
 * | `BANGER_VM_NAME` | the VM's name (a DNS label) |
 * | `BANGER_HOSTNAME` | the guest hostname (a DNS label) |
 * | `BANGER_GUEST_IP` | the guest address with prefix, `a.b.c.d/len` |
 * | `BANGER_GATEWAY` | the default gateway, `a.b.c.d` (optional) |
 * | `BANGER_DNS` | nameservers, comma-separated `a.b.c.d` (optional) |
 *
 * The guest script parses this file; it never sources it, so nothing in it is executed.
 *
 * @module
 */

import { BangerError } from "../../host/errors.ts";
import { parseIpv4 } from "../../host/net/ipv4.ts";

/** A guest configuration value that cannot be written into `guest.env`. */
export class GuestEnvError extends BangerError {}

/** Everything `guest.env` carries. */
export interface GuestEnv {
  /** The VM's id. */
  vmId: string;
  /** The VM's name. */
  vmName: string;
  /** The guest hostname; usually the VM name. */
  hostname: string;
  /** The guest address with its prefix length, e.g. `172.16.0.2/24`. */
  guestIp: string;
  /** The default gateway (the host side of the guest's network). */
  gateway?: string;
  /** Nameservers for `/etc/resolv.conf`. @default {[]} */
  dns?: readonly string[];
}

const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const VM_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;

/**
 * Renders `guest.env`, validating every value so nothing but the documented shapes can
 * reach the guest's parser.
 *
 * @throws {GuestEnvError} naming the first invalid field (`invalid_argument`).
 * @example
 * ```ts
 * renderGuestEnv({
 *   vmId: "a1b2c3", vmName: "dev", hostname: "dev",
 *   guestIp: "172.16.0.2/24", gateway: "172.16.0.1", dns: ["172.16.0.1"],
 * });
 * // "BANGER_VM_ID=a1b2c3\nBANGER_VM_NAME=dev\n...BANGER_DNS=172.16.0.1\n"
 * ```
 */
export function renderGuestEnv(env: GuestEnv): string {
  const bad = (field: string, value: string, why: string) =>
    new GuestEnvError(`Cannot write guest.env field ${field}="${value}": ${why}`, {
      code: "invalid_argument",
    });
  if (!VM_ID.test(env.vmId)) throw bad("BANGER_VM_ID", env.vmId, "use a-z, 0-9 and '-'");
  if (!DNS_LABEL.test(env.vmName)) throw bad("BANGER_VM_NAME", env.vmName, "not a DNS label");
  if (!DNS_LABEL.test(env.hostname)) {
    throw bad("BANGER_HOSTNAME", env.hostname, "not a DNS label");
  }
  const cidr = /^([0-9.]+)\/([0-9]{1,2})$/.exec(env.guestIp);
  if (!cidr || parseIpv4(cidr[1]) === undefined || Number(cidr[2]) > 32) {
    throw bad("BANGER_GUEST_IP", env.guestIp, "expected a.b.c.d/prefix");
  }
  if (env.gateway !== undefined && parseIpv4(env.gateway) === undefined) {
    throw bad("BANGER_GATEWAY", env.gateway, "expected an IPv4 address");
  }
  const dns = env.dns ?? [];
  for (const server of dns) {
    if (parseIpv4(server) === undefined) {
      throw bad("BANGER_DNS", server, "expected an IPv4 address");
    }
  }
  const lines = [
    `BANGER_VM_ID=${env.vmId}`,
    `BANGER_VM_NAME=${env.vmName}`,
    `BANGER_HOSTNAME=${env.hostname}`,
    `BANGER_GUEST_IP=${env.guestIp}`,
  ];
  if (env.gateway !== undefined) lines.push(`BANGER_GATEWAY=${env.gateway}`);
  if (dns.length > 0) lines.push(`BANGER_DNS=${dns.join(",")}`);
  return lines.join("\n") + "\n";
}
