/**
 * Anti-spoofing for guests: each VM's tap accepts only frames from its own MAC, ARP and
 * IPv4 from its own address, and nothing else (no IPv6, no other ethertypes). So a guest
 * cannot claim another guest's (or the next VM's) address, nor slip out through NAT with
 * a NAT guest's source address. The rules live in the instance's bridge-family table
 * (`table bridge banger_<id>`), whose `prerouting` chain sees every frame a port sends
 * into the bridge, tagged `comment "banger-vm:<vmId>"` like the NAT rules.
 *
 * @module
 */

import { BangerError } from "../errors.ts";
import { formatIpv4, parseIpv4 } from "./ipv4.ts";
import { isTapName } from "./tap.ts";
import { because } from "../os/libc.ts";
import { applyScript, listTableJson, serialised } from "./_nft.ts";

/** Prefix of the comment on every per-VM rule (shared with the NAT rules). */
const COMMENT_PREFIX = "banger-vm:";
const VM_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const TABLE = /^banger_[a-z0-9]{4}$/;

/** A guard rule could not be rendered, applied or read. */
export class GuardError extends BangerError {}

/** Who may speak on one tap. */
export interface TapGuard {
  /** The VM's id (tags its rules). */
  vmId: string;
  /** Its tap. */
  tap: string;
  /** Its IPv4 address. */
  guestIp: string;
  /** Its MAC address (lower-case). */
  mac: string;
}

/**
 * One transaction: declare the table and chain, delete rules by handle, add guards.
 * Pure.
 *
 * @throws {GuardError} `invalid_argument` for a malformed id, tap, address, MAC or table
 *   (nothing can be injected into the script).
 */
export function renderGuardScript(
  change: { delete: number[]; add: TapGuard[] },
  table: string,
): string {
  if (!TABLE.test(table)) throw invalid(`table "${table}"`);
  const t = `bridge ${table}`;
  const lines = [
    `table ${t} {`,
    `\tchain prerouting {`,
    `\t\ttype filter hook prerouting priority -200; policy accept;`,
    `\t}`,
    `}`,
  ];
  for (const handle of change.delete) {
    if (!Number.isInteger(handle) || handle < 1) throw invalid(`rule handle ${handle}`);
    lines.push(`delete rule ${t} prerouting handle ${handle}`);
  }
  for (const g of change.add) {
    const ip = parseIpv4(g.guestIp);
    if (!VM_ID.test(g.vmId)) throw invalid(`VM id "${g.vmId}"`);
    if (!isTapName(g.tap)) throw invalid(`tap "${g.tap}"`);
    if (ip === undefined) throw invalid(`address "${g.guestIp}"`);
    if (!MAC.test(g.mac)) throw invalid(`MAC "${g.mac}"`);
    const addr = formatIpv4(ip);
    const on = `add rule ${t} prerouting iifname "${g.tap}"`;
    const tag = `comment "${COMMENT_PREFIX}${g.vmId}"`;
    lines.push(
      `${on} ether saddr != ${g.mac} drop ${tag}`,
      `${on} ether type arp arp saddr ip != ${addr} drop ${tag}`,
      `${on} ether type arp arp saddr ether != ${g.mac} drop ${tag}`,
      `${on} ether type ip ip saddr != ${addr} drop ${tag}`,
      `${on} ether type != { ip, arp } drop ${tag}`,
    );
  }
  return lines.join("\n") + "\n";
}

/** The rule handles of each guarded VM, from `nft -j list table bridge …`. Pure. */
export function parseGuards(json: string): Map<string, number[]> {
  const doc = JSON.parse(json) as { nftables?: { rule?: { handle: number; comment?: string } }[] };
  const byVm = new Map<string, number[]>();
  for (const item of doc.nftables ?? []) {
    const comment = item.rule?.comment;
    if (!item.rule || !comment?.startsWith(COMMENT_PREFIX)) continue;
    const vmId = comment.slice(COMMENT_PREFIX.length);
    byVm.set(vmId, [...(byVm.get(vmId) ?? []), item.rule.handle]);
  }
  return byVm;
}

async function listUnlocked(table: string): Promise<Map<string, number[]>> {
  try {
    return parseGuards((await listTableJson("bridge", table)) ?? "{}");
  } catch (err) {
    throw new GuardError(`Cannot list tap guards: ${because(err)}`, { cause: err });
  }
}

/**
 * Installs (or replaces) the guard of `guard.vmId`'s tap.
 *
 * @throws {GuardError} when the guard is malformed or `nft` fails.
 * @example
 * ```ts
 * await addGuard({ vmId: "abc", tap: "bg-tapk3x9-0", guestIp: "172.16.0.2", mac: "06:00:ac:10:00:02" }, "banger_k3x9");
 * ```
 */
export function addGuard(guard: TapGuard, table: string): Promise<void> {
  try {
    renderGuardScript({ delete: [], add: [guard] }, table); // validates before any change
  } catch (err) {
    return Promise.reject(err);
  }
  return serialised(async () => {
    const old = (await listUnlocked(table)).get(guard.vmId) ?? [];
    const script = renderGuardScript({ delete: old, add: [guard] }, table);
    await applyScript(script, `Cannot guard tap "${guard.tap}"`, GuardError);
  });
}

/**
 * Removes `vmId`'s guard.
 *
 * @returns `false` when it had none.
 */
export function removeGuard(vmId: string, table: string): Promise<boolean> {
  if (!VM_ID.test(vmId)) return Promise.reject(invalid(`VM id "${vmId}"`));
  if (!TABLE.test(table)) return Promise.reject(invalid(`table "${table}"`));
  return serialised(async () => {
    const old = (await listUnlocked(table)).get(vmId) ?? [];
    if (old.length === 0) return false;
    const script = renderGuardScript({ delete: old, add: [] }, table);
    await applyScript(script, `Cannot remove the tap guard of VM "${vmId}"`, GuardError);
    return true;
  });
}

/** The VM ids with a guard installed (for reconcile). */
export function listGuards(table: string): Promise<string[]> {
  if (!TABLE.test(table)) return Promise.reject(invalid(`table "${table}"`));
  return serialised(async () => [...(await listUnlocked(table)).keys()].sort());
}

function invalid(what: string): GuardError {
  return new GuardError(`Cannot render a tap guard for ${what}: not valid`, {
    code: "invalid_argument",
  });
}
