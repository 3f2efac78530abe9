/**
 * The guest network a fresh install uses: one bridge, its address, and the CIDR guests get
 * addresses from. The daemon's config defaults to it, and the root helper confines what it
 * creates to it (or to what root's config sets instead).
 *
 * @module
 */

/** A bridge and the guest network behind it. */
export interface GuestNetwork {
  /** `bg-br0`. */
  bridgeName: string;
  /** The bridge's (the guests' gateway's) address, `172.16.0.1`. */
  bridgeIp: string;
  /** Where guest addresses come from, `172.16.0.0/24`. */
  cidr: string;
}

/** The defaults. */
export const DEFAULT_GUEST_NETWORK: GuestNetwork = {
  bridgeName: "bg-br0",
  bridgeIp: "172.16.0.1",
  cidr: "172.16.0.0/24",
};
