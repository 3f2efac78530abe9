/**
 * banger's host bridge: created idempotently with `ip`, given its address and brought
 * up. Bridge names are `bg-` plus 1–12 of `a-z0-9-` (the `bridge_name` rule in
 * `config.toml`), excluding the `bg-tap` prefix reserved for taps.
 *
 * @module
 */

import { BangerError } from "../errors.ts";
import { ExecError } from "../errors.ts";
import { run, runText } from "../os/exec.ts";
import { formatIpv4, parseIpv4 } from "./ipv4.ts";
import { because } from "../os/libc.ts";
import { isTapName } from "./tap.ts";

const BRIDGE_NAME = /^bg-[a-z0-9-]{1,12}$/;

/** The bridge could not be created, addressed or inspected. */
export class BridgeError extends BangerError {}

/** Whether `name` is a banger bridge name. Pure. */
export function isBridgeName(name: string): boolean {
  return BRIDGE_NAME.test(name) && !isTapName(name);
}

/** An interface address: the host's own address plus the prefix length of its network. */
export interface InterfaceAddress {
  /** Dotted quad, e.g. `172.16.0.1`. */
  address: string;
  /** Prefix length of the network, 1–32. */
  prefixLength: number;
}

/**
 * Parses `a.b.c.d/len` where host bits may be set (`172.16.0.1/24`). Pure.
 *
 * @returns `undefined` when malformed.
 */
export function parseInterfaceAddress(text: string): InterfaceAddress | undefined {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text);
  if (!m) return undefined;
  const address = parseIpv4(m[1]);
  const prefixLength = Number(m[2]);
  if (address === undefined || prefixLength < 1 || prefixLength > 32) return undefined;
  return { address: formatIpv4(address), prefixLength };
}

interface IpLinkDetail {
  ifname: string;
  ifalias?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

async function showLink(name: string): Promise<IpLinkDetail | undefined> {
  try {
    const out = await runText("ip", ["-j", "-d", "addr", "show", "dev", name]);
    return (JSON.parse(out || "[]") as IpLinkDetail[])[0];
  } catch (err) {
    if (err instanceof ExecError && /does not exist/.test(err.failure.stderrTail)) return undefined;
    throw err;
  }
}

/** Options for {@linkcode ensureBridge}. */
export interface EnsureBridgeOptions {
  /** Bridge name, e.g. `bg-br0`. */
  name: string;
  /** The host's address on it with the guest network's prefix, e.g. `172.16.0.1/24`. */
  address: string;
  /** The interface alias to give it: which banger instance owns it (`host/instance.ts`). */
  alias?: string;
}

/**
 * Makes sure bridge `name` exists, holds `address` and is up. Running it again changes
 * nothing; a concurrent creator is tolerated.
 *
 * @throws {BridgeError} when the name is not banger's, the address is malformed, an
 *   interface of that name exists but is not a bridge, or `ip` fails.
 * @example
 * ```ts
 * await ensureBridge({ name: "bg-br0", address: "172.16.0.1/24" });
 * ```
 */
export async function ensureBridge(options: EnsureBridgeOptions): Promise<void> {
  const { name } = options;
  if (!isBridgeName(name)) {
    throw new BridgeError(
      `Cannot use bridge name "${name}": it must be "bg-" plus 1 to 12 of a-z, 0-9, "-" (not "bg-tap…")`,
      { code: "invalid_argument" },
    );
  }
  const addr = parseInterfaceAddress(options.address);
  if (!addr) {
    throw new BridgeError(
      `Cannot use bridge address "${options.address}": it must look like 172.16.0.1/24`,
      { code: "invalid_argument" },
    );
  }
  try {
    let link = await showLink(name);
    if (!link) {
      await run("ip", ["link", "add", "name", name, "type", "bridge"]).catch(async (err) => {
        if (!(await showLink(name))) throw err; // lost a race to a concurrent creator: fine
      });
      link = await showLink(name);
    }
    if (link?.linkinfo?.info_kind !== "bridge") {
      throw new BridgeError(
        `Cannot use "${name}" as banger's bridge: it exists as a ${
          link?.linkinfo?.info_kind ?? "plain"
        } interface`,
        { code: "conflict", hint: `remove it (ip link del ${name}) or choose another bridge_name` },
      );
    }
    const has = (link.addr_info ?? []).some((a) =>
      a.family === "inet" && a.local === addr.address && a.prefixlen === addr.prefixLength
    );
    if (!has) {
      await run("ip", ["addr", "replace", `${addr.address}/${addr.prefixLength}`, "dev", name]);
    }
    if (options.alias !== undefined && link.ifalias !== options.alias) {
      await run("ip", ["link", "set", "dev", name, "alias", options.alias]);
    }
    if (!(link.flags ?? []).includes("UP")) await run("ip", ["link", "set", "dev", name, "up"]);
  } catch (err) {
    if (err instanceof BridgeError) throw err;
    throw new BridgeError(`Cannot set up bridge "${name}": ${because(err)}`, { cause: err });
  }
}

/**
 * Deletes bridge `name` (for uninstall and tests).
 *
 * @returns `false` when it did not exist.
 * @throws {BridgeError} when the name is not banger's or `ip` fails.
 */
export async function deleteBridge(name: string): Promise<boolean> {
  if (!isBridgeName(name)) {
    throw new BridgeError(`Cannot delete bridge "${name}": it is not a banger bridge name`, {
      code: "invalid_argument",
    });
  }
  try {
    const link = await showLink(name);
    if (!link) return false;
    if (link.linkinfo?.info_kind !== "bridge") {
      throw new BridgeError(`Cannot delete "${name}": it is not a bridge`, { code: "conflict" });
    }
    await run("ip", ["link", "del", "dev", name]);
    return true;
  } catch (err) {
    if (err instanceof BridgeError) throw err;
    throw new BridgeError(`Cannot delete bridge "${name}": ${because(err)}`, { cause: err });
  }
}
