/**
 * Opt-in NAT for guests: one nftables table per banger instance (`table ip banger_<id>`,
 * `host/instance.ts`), with a
 * per-VM masquerade rule for the guest's /32 and two forward-accept rules, every rule
 * tagged `comment "banger-vm:<vmId>"` so a VM's rules can be found, replaced and removed
 * without touching anything else. No other table is ever read or written.
 *
 * The forward rules match the bridge and the guest address: once a tap is enslaved to a
 * bridge, routed packets reach the `ip` family's forward hook with the bridge, not the
 * tap, as their interface, so a tap-keyed rule would never match.
 *
 * The script comes from the pure {@linkcode renderNatScript} and is applied with
 * `nft -f -`, one transaction per change.
 *
 * @module
 */

import { BangerError, ExecError } from "../errors.ts";
import { run } from "../os/exec.ts";
import { applyScript, listTableJson, serialised } from "./_nft.ts";
import { formatIpv4, parseIpv4 } from "./ipv4.ts";
import { because } from "../os/libc.ts";
import { readProcFile, writeProcFile } from "../os/procfs.ts";
import { isBridgeName } from "./bridge.ts";

/** An instance's table name (`banger_<id>`); the bare `banger` of older releases is read too. */
const TABLE = /^banger(_[a-z0-9]{4})?$/;
/** Prefix of the comment on every per-VM rule. */
export const NAT_COMMENT_PREFIX = "banger-vm:";
const VM_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const IP_FORWARD = "/proc/sys/net/ipv4/ip_forward";

/** NAT rules could not be rendered, applied or read. */
export class NftError extends BangerError {}

/** One VM's NAT: its guest address and the bridge its tap is enslaved to. */
export interface NatRule {
  /** The VM's id; tags its rules as `banger-vm:<vmId>`. */
  vmId: string;
  /** The guest's IPv4 address (masqueraded as a /32). */
  guestIp: string;
  /** banger's bridge. */
  bridge: string;
}

/** A rule to delete, by chain and handle. */
export interface NatRuleRef {
  /** The base chain in the instance's table. */
  chain: "postrouting" | "forward";
  /** The kernel's rule handle. */
  handle: number;
}

/** What {@linkcode renderNatScript} produces a transaction for. */
export interface NatChange {
  /** Rules to delete first (a VM's old rules). */
  delete: NatRuleRef[];
  /** VMs whose rules to add. */
  add: NatRule[];
}

function checked(rule: NatRule): NatRule {
  if (!VM_ID.test(rule.vmId)) {
    throw new NftError(`Cannot render NAT rules for VM id "${rule.vmId}": not a valid id`, {
      code: "invalid_argument",
    });
  }
  const ip = parseIpv4(rule.guestIp);
  if (ip === undefined) {
    throw new NftError(`Cannot render NAT rules for guest address "${rule.guestIp}"`, {
      code: "invalid_argument",
    });
  }
  if (!isBridgeName(rule.bridge)) {
    throw new NftError(`Cannot render NAT rules for bridge "${rule.bridge}": not banger's`, {
      code: "invalid_argument",
    });
  }
  return { ...rule, guestIp: formatIpv4(ip) };
}

/**
 * Renders one `nft -f` transaction: declare the table and its two base chains (a no-op
 * when they exist), delete the given rules, add the given VMs' rules. Pure.
 *
 * @throws {NftError} when an id, address or bridge name is malformed (so nothing can
 *   be injected into the script).
 * @example
 * ```ts
 * renderNatScript({ delete: [], add: [{ vmId: "abc", guestIp: "172.16.0.2", bridge: "bg-br0" }] }, "banger_k3x9");
 * ```
 */
export function renderNatScript(change: NatChange, table: string): string {
  checkTable(table);
  const lines = [
    `table ip ${table} {`,
    `\tchain postrouting {`,
    `\t\ttype nat hook postrouting priority srcnat; policy accept;`,
    `\t}`,
    `\tchain forward {`,
    `\t\ttype filter hook forward priority filter; policy accept;`,
    `\t}`,
    `}`,
  ];
  for (const ref of change.delete) {
    if (!Number.isInteger(ref.handle) || ref.handle < 1) {
      throw new NftError(`Cannot delete NAT rule handle ${ref.handle}`, {
        code: "invalid_argument",
      });
    }
    if (ref.chain !== "postrouting" && ref.chain !== "forward") {
      throw new NftError(`Cannot delete a NAT rule in chain "${ref.chain}"`, {
        code: "invalid_argument",
      });
    }
    lines.push(`delete rule ip ${table} ${ref.chain} handle ${ref.handle}`);
  }
  for (const raw of change.add) {
    const r = checked(raw);
    const tag = `comment "${NAT_COMMENT_PREFIX}${r.vmId}"`;
    const t = `ip ${table}`;
    lines.push(
      `add rule ${t} postrouting ip saddr ${r.guestIp} oifname != "${r.bridge}" masquerade ${tag}`,
      `add rule ${t} forward iifname "${r.bridge}" ip saddr ${r.guestIp} accept ${tag}`,
      `add rule ${t} forward oifname "${r.bridge}" ip daddr ${r.guestIp} ct state established,related accept ${tag}`,
    );
  }
  return lines.join("\n") + "\n";
}

/** One VM's installed NAT, as read back from the kernel. */
export interface NatEntry {
  /** The VM id from the rules' comment. */
  vmId: string;
  /** The guest address its masquerade rule matches, when found. */
  guestIp?: string;
  /** Its rules, for deletion. */
  rules: NatRuleRef[];
}

interface NftRule {
  chain: string;
  handle: number;
  comment?: string;
  expr?: unknown[];
}

function guestIpOf(expr: unknown[] | undefined): string | undefined {
  for (const e of expr ?? []) {
    const match = (e as { match?: { left?: { payload?: { field?: string } }; right?: unknown } })
      .match;
    if (match?.left?.payload?.field === "saddr" && typeof match.right === "string") {
      return match.right;
    }
  }
  return undefined;
}

/** Groups the rules of `nft -j list table ip <table>` output by VM id. Pure. */
export function parseNatRuleset(json: string): NatEntry[] {
  const doc = JSON.parse(json) as { nftables?: { rule?: NftRule }[] };
  const byVm = new Map<string, NatEntry>();
  for (const item of doc.nftables ?? []) {
    const rule = item.rule;
    if (!rule?.comment?.startsWith(NAT_COMMENT_PREFIX)) continue;
    if (rule.chain !== "postrouting" && rule.chain !== "forward") continue;
    const vmId = rule.comment.slice(NAT_COMMENT_PREFIX.length);
    const entry = byVm.get(vmId) ?? { vmId, rules: [] };
    entry.rules.push({ chain: rule.chain, handle: rule.handle });
    if (rule.chain === "postrouting") entry.guestIp ??= guestIpOf(rule.expr);
    byVm.set(vmId, entry);
  }
  return [...byVm.values()].sort((a, b) => a.vmId.localeCompare(b.vmId));
}

function checkTable(table: string): void {
  if (!TABLE.test(table)) {
    throw new NftError(`Cannot use nftables table "${table}": banger's are banger_<id>`, {
      code: "invalid_argument",
    });
  }
}

async function listUnlocked(table: string): Promise<NatEntry[]> {
  checkTable(table);
  try {
    return parseNatRuleset((await listTableJson("ip", table)) ?? "{}");
  } catch (err) {
    throw new NftError(`Cannot list NAT rules: ${because(err)}`, { cause: err });
  }
}

function apply(script: string, what: string): Promise<void> {
  return applyScript(script, what, NftError);
}

/**
 * The VMs that have NAT rules installed in `table` (for reconcile).
 *
 * @throws {NftError} when `nft` fails.
 */
export function listNat(table: string): Promise<NatEntry[]> {
  return serialised(() => listUnlocked(table));
}

/**
 * Installs (or replaces) `rule.vmId`'s NAT rules and turns on `net.ipv4.ip_forward`.
 *
 * @throws {NftError} when the rule is malformed or `nft` fails.
 * @example
 * ```ts
 * await addNat({ vmId: "abc", guestIp: "172.16.0.2", bridge: "bg-br0" }, "banger_k3x9");
 * ```
 */
export function addNat(rule: NatRule, table: string): Promise<void> {
  let script: string;
  try {
    script = renderNatScript({ delete: [], add: [rule] }, table); // validates before any change
  } catch (err) {
    return Promise.reject(err);
  }
  return serialised(async () => {
    const old = (await listUnlocked(table)).find((e) => e.vmId === rule.vmId)?.rules ?? [];
    const final = old.length ? renderNatScript({ delete: old, add: [rule] }, table) : script;
    await apply(final, `Cannot add NAT rules for VM "${rule.vmId}"`);
    enableIpForward();
  });
}

/**
 * Removes `vmId`'s NAT rules.
 *
 * @returns `false` when it had none.
 * @throws {NftError} when `nft` fails.
 */
export function removeNat(vmId: string, table: string): Promise<boolean> {
  if (!VM_ID.test(vmId)) {
    return Promise.reject(
      new NftError(`Cannot remove NAT rules for VM id "${vmId}": not a valid id`, {
        code: "invalid_argument",
      }),
    );
  }
  return serialised(async () => {
    const old = (await listUnlocked(table)).find((e) => e.vmId === vmId)?.rules ?? [];
    if (old.length === 0) return false;
    await apply(
      renderNatScript({ delete: old, add: [] }, table),
      `Cannot remove NAT rules for VM "${vmId}"`,
    );
    return true;
  });
}

/**
 * Deletes an instance's whole table (uninstall, tests).
 *
 * @returns `false` when it did not exist.
 * @throws {NftError} when `nft` fails otherwise.
 */
export function deleteNatTable(table: string): Promise<boolean> {
  return serialised(async () => {
    checkTable(table);
    try {
      await run("nft", ["delete", "table", "ip", table]);
      return true;
    } catch (err) {
      if (err instanceof ExecError && /No such file or directory/.test(err.failure.stderrTail)) {
        return false;
      }
      throw new NftError(`Cannot delete table ip ${table}: ${because(err)}`, { cause: err });
    }
  });
}

/**
 * Sets `net.ipv4.ip_forward` to 1 (per network namespace) unless it already is.
 *
 * @returns whether it changed.
 * @throws {NftError} when the sysctl cannot be read or written.
 */
export function enableIpForward(): boolean {
  try {
    if (readProcFile(IP_FORWARD).trim() === "1") return false;
    writeProcFile(IP_FORWARD, "1\n");
    return true;
  } catch (err) {
    throw new NftError(`Cannot enable IPv4 forwarding: ${because(err)}`, { cause: err });
  }
}
