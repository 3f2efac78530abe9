/**
 * A banger instance: what one state directory owns on the host. Two daemons with
 * different state directories (a developer's own beside a system install, a test run
 * beside a real one) share the kernel's global names: interfaces, nftables tables,
 * vsock CIDs. So every such name an instance makes carries its id, and an instance lists,
 * adopts and deletes only names with its own id. The id is derived from the state
 * directory, so the daemon and its root helper agree on it without asking each other.
 *
 * Device-mapper names need no id: they are `bg-root-<vmId>` with 64-bit random VM ids,
 * and reconcile removes only those of VMs in its own store.
 *
 * @module
 */

/** One instance's names. */
export interface Instance {
  /** 4 of `a-z0-9`, from the state directory. */
  id: string;
  /** The state directory it was derived from. */
  stateDir: string;
  /** Every tap it makes is this prefix plus a decimal index (`bg-tapk3x9-12`). */
  tapPrefix: string;
  /** Its nftables tables (`ip` for NAT): `banger_<id>`. */
  nftTable: string;
  /** The first vsock CID it hands out; its block holds {@linkcode CID_BLOCK} CIDs. */
  firstCid: number;
  /** What its bridge's alias says, so another instance can name the bridge's owner. */
  bridgeAlias: string;
}

/** CIDs per instance: 65 536, so blocks of different ids never overlap. */
export const CID_BLOCK = 0x10000;
/** The largest tap index that fits the 15-byte interface name. */
export const MAX_TAP_INDEX = 9999;
const ALIAS = /^banger instance ([a-z0-9]{4}) (\/.*)$/;

/**
 * The instance of `stateDir`. Pure.
 *
 * @example
 * ```ts
 * instanceFor("/var/lib/banger").tapPrefix; // "bg-tap" + 4 chars + "-"
 * ```
 */
export function instanceFor(stateDir: string): Instance {
  const hash = fnv1a(stateDir);
  const id = (hash % 36 ** 4).toString(36).padStart(4, "0");
  // Blocks 1..65534: never CIDs 0-2 (reserved) nor the top block (U32_MAX is "any").
  const block = 1 + ((hash >>> 8) % 0xfffe);
  return {
    id,
    stateDir,
    tapPrefix: `bg-tap${id}-`,
    nftTable: `banger_${id}`,
    firstCid: block * CID_BLOCK,
    bridgeAlias: `banger instance ${id} ${stateDir}`.slice(0, 255),
  };
}

/** Whose bridge an alias names, when it is a banger instance's. Pure. */
export function parseBridgeAlias(alias: string): { id: string; stateDir: string } | undefined {
  const m = ALIAS.exec(alias.trim());
  return m ? { id: m[1], stateDir: m[2] } : undefined;
}

/** The index of one of `instance`'s taps, or `undefined` for any other name. Pure. */
export function tapIndex(instance: Instance, name: string): number | undefined {
  if (!name.startsWith(instance.tapPrefix)) return undefined;
  const rest = name.slice(instance.tapPrefix.length);
  return /^(0|[1-9]\d{0,3})$/.test(rest) ? Number(rest) : undefined;
}

/** 32-bit FNV-1a of the UTF-8 bytes: a stable, well-spread name hash (not a secret). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
