/**
 * IPv4 addresses and CIDR blocks as plain numbers: parsing, formatting, membership and
 * the guest MAC derived from a guest address.
 *
 * @module
 */

/** A parsed `a.b.c.d/len` block. */
export interface Cidr {
  /** Network address as an unsigned 32-bit number. */
  network: number;
  /** Prefix length, 0–32. */
  prefixLength: number;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Parses a dotted-quad address; `undefined` when it is not one. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return undefined;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

/** Formats a 32-bit number as a dotted quad. */
export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

/** Parses `a.b.c.d/len`; `undefined` when malformed or when host bits are set. */
export function parseCidr(text: string): Cidr | undefined {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text);
  if (!m) return undefined;
  const address = parseIpv4(m[1]);
  const prefixLength = Number(m[2]);
  if (address === undefined || prefixLength > 32) return undefined;
  const size = 2 ** (32 - prefixLength);
  if (address % size !== 0) return undefined;
  return { network: address, prefixLength };
}

/** Number of addresses in the block. */
export function cidrSize(cidr: Cidr): number {
  return 2 ** (32 - cidr.prefixLength);
}

/** Whether `address` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, address: number): boolean {
  return address >= cidr.network && address < cidr.network + cidrSize(cidr);
}

/** Formats a block as `a.b.c.d/len`. */
export function formatCidr(cidr: Cidr): string {
  return `${formatIpv4(cidr.network)}/${cidr.prefixLength}`;
}

/**
 * The guest MAC for a guest address: `06:00:` followed by the four address bytes, the
 * convention Firecracker's CI images use to derive their address from the MAC.
 *
 * @example
 * ```ts
 * guestMac(0xac100002); // "06:00:ac:10:00:02" (172.16.0.2)
 * ```
 */
export function guestMac(address: number): string {
  const bytes = [24, 16, 8, 0].map((s) => Math.floor(address / 2 ** s) % 256);
  return ["06", "00", ...bytes.map((b) => b.toString(16).padStart(2, "0"))].join(":");
}
