/**
 * Persistent TAP devices for guests: created and deleted with `TUNSETIFF` +
 * `TUNSETPERSIST` (+ `TUNSETOWNER`) on `/dev/net/tun`, enslaved to banger's bridge and
 * listed with `ip -j`. Creating costs about 0.14 ms through the ioctl against 1.8 ms for
 * `ip tuntap add`; deleting costs about 16 ms either way (kernel netdev unregister)
 * (reference/host-primitives-lab.md §2).
 *
 * Tap names are `bg-tap` followed by 1–9 of `a-z0-9-` (15 bytes at most, the kernel's
 * IFNAMSIZ minus the NUL), so banger never touches an interface it did not name.
 *
 * TUNSETIFF acts on the calling thread's network namespace.
 *
 * @module
 */

import { BangerError } from "../errors.ts";
import { run, runText } from "../os/exec.ts";
import { because, Errno, Fd, LibcError, O_RDWR } from "../os/libc.ts";
import { readProcFileIfExists } from "../os/procfs.ts";

// <linux/if_tun.h>, <linux/if.h> (values checked with gcc, reference §2)
/** Attach this fd to the named tun/tap device, creating it if needed. */
export const TUNSETIFF = 0x400454ca;
/** 1: the device outlives its fd; 0: it goes away when the last fd closes. */
export const TUNSETPERSIST = 0x400454cb;
/** Let this uid open the device. */
export const TUNSETOWNER = 0x400454cc;
/** Let this gid open the device. */
export const TUNSETGROUP = 0x400454ce;
/** `ifr_flags`: ethernet frames (TAP), not IP packets. */
export const IFF_TAP = 0x0002;
/** `ifr_flags`: no packet-information header. */
export const IFF_NO_PI = 0x1000;
/** `ifr_flags`: virtio-net header on each frame (what Firecracker opens with). */
export const IFF_VNET_HDR = 0x4000;
/** `TUNSETIFF` fails with EBUSY when the interface already exists (never re-owns one). */
export const IFF_TUN_EXCL = 0x8000;
/** sizeof(struct ifreq): ifr_name @0 (char[16]), ifr_flags @16 (short). */
export const IFREQ_SIZE = 40;
/** IFNAMSIZ: interface names are at most 15 bytes plus the NUL. */
export const IFNAMSIZ = 16;

const TUN = "/dev/net/tun";
const TAP_NAME = /^bg-tap[a-z0-9-]{1,9}$/;
const DELETE_ATTEMPTS = 5;

/** A tap could not be created, deleted or listed. */
export class TapError extends BangerError {}

/** Whether `name` is a banger tap name (`bg-tap…`, at most 15 bytes). Pure. */
export function isTapName(name: string): boolean {
  return TAP_NAME.test(name);
}

/**
 * Encodes a `struct ifreq` holding `name` and `flags`. Pure.
 *
 * @throws {TapError} when `name` is empty, over 15 bytes or holds a NUL, `/` or space.
 * @example
 * ```ts
 * encodeIfreq("bg-tap0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR).length; // 40
 * ```
 */
export function encodeIfreq(name: string, flags: number): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  // deno-lint-ignore no-control-regex
  if (bytes.length === 0 || bytes.length >= IFNAMSIZ || /[\x00-\x20/:\x7f]/.test(name)) {
    throw new TapError(
      `Cannot use interface name "${name}": it must be 1 to ${
        IFNAMSIZ - 1
      } bytes without spaces, "/" or ":"`,
      { code: "invalid_argument" },
    );
  }
  const buf = new Uint8Array(IFREQ_SIZE);
  buf.set(bytes, 0);
  new DataView(buf.buffer).setUint16(IFNAMSIZ, flags, true);
  return buf;
}

function checkTapName(name: string): void {
  if (!isTapName(name)) {
    throw new TapError(
      `Cannot use tap name "${name}": banger's taps are named "bg-tap" plus 1 to 9 of a-z, 0-9, "-"`,
      { code: "invalid_argument" },
    );
  }
}

/** Options for {@linkcode createTap}. */
export interface CreateTapOptions {
  /** Bridge to enslave the tap to. */
  bridge: string;
  /** uid allowed to open the tap (the VMM's, when it is not root). */
  owner?: number;
  /** gid allowed to open the tap. */
  group?: number;
}

/**
 * Creates persistent tap `name`, enslaves it to `bridge` and brings it up. If any step
 * after creation fails, the tap is deleted again.
 *
 * @throws {TapError} `conflict` when an interface of that name exists (another instance's
 *   tap is never taken over), or when the name is not banger's or a step fails.
 * @example
 * ```ts
 * await createTap("bg-tap0", { bridge: "bg-br0" });
 * ```
 */
export async function createTap(name: string, options: CreateTapOptions): Promise<void> {
  checkTapName(name);
  try {
    using tun = Fd.open(TUN, O_RDWR, "open tun device");
    const flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL;
    tun.ioctlPtr(TUNSETIFF, encodeIfreq(name, flags), "create tap");
    if (options.owner !== undefined) tun.ioctlInt(TUNSETOWNER, options.owner, "set owner of");
    if (options.group !== undefined) tun.ioctlInt(TUNSETGROUP, options.group, "set group of");
    tun.ioctlInt(TUNSETPERSIST, 1, "make persistent tap with");
  } catch (err) {
    const exists = err instanceof LibcError && err.errno === Errno.EBUSY &&
      err.operation === "create tap";
    throw new TapError(
      exists
        ? `Cannot create tap "${name}": an interface of that name exists`
        : `Cannot create tap "${name}": ${because(err)}`,
      { code: exists ? "conflict" : err instanceof LibcError ? err.code : "internal", cause: err },
    );
  }
  try {
    await run("ip", ["link", "set", "dev", name, "master", options.bridge, "up"]);
  } catch (err) {
    await deleteTap(name).catch(() => {});
    throw new TapError(
      `Cannot attach tap "${name}" to bridge "${options.bridge}": ${because(err)}`,
      {
        code: "failed_precondition",
        hint: "ensure the bridge exists first",
        cause: err,
      },
    );
  }
}

/**
 * Deletes tap `name` (clears its persist flag so it goes away with our fd). EBUSY — a
 * VMM still holds it — is retried a few times.
 *
 * @returns `false` when it did not exist.
 * @throws {TapError} when it is not a tap, or stays busy.
 */
export async function deleteTap(name: string): Promise<boolean> {
  checkTapName(name);
  // Without this check, TUNSETIFF would create a transient tap just to drop it. Read the
  // calling thread's own namespace view: /sys shows the namespace it was mounted in.
  if (!interfaceExists(name)) return false;
  let delay = 50;
  for (let attempt = 1;; attempt++) {
    try {
      using tun = Fd.open(TUN, O_RDWR, "open tun device");
      tun.ioctlPtr(TUNSETIFF, encodeIfreq(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), "open tap");
      tun.ioctlInt(TUNSETPERSIST, 0, "clear persist flag of tap with");
      return true;
    } catch (err) {
      const busy = err instanceof LibcError && err.errno === Errno.EBUSY;
      if (!busy || attempt >= DELETE_ATTEMPTS) {
        throw new TapError(`Cannot delete tap "${name}": ${because(err)}`, {
          code: err instanceof LibcError ? err.code : "internal",
          hint: busy ? "a VMM still has it open; stop the VM first" : undefined,
          cause: err,
        });
      }
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay *= 2;
  }
}

/** A banger tap found by {@linkcode listTaps}. */
export interface TapInfo {
  /** Interface name, `bg-tap…`. */
  name: string;
  /** The bridge it is enslaved to, if any. */
  bridge?: string;
  /** Whether the link is administratively up. */
  up: boolean;
}

interface IpLink {
  ifname: string;
  flags?: string[];
  master?: string;
  linkinfo?: { info_kind?: string };
}

/** Picks banger's taps out of `ip -j -d link show` output. Pure. */
export function parseTapList(json: string): TapInfo[] {
  const links = JSON.parse(json || "[]") as IpLink[];
  return links
    .filter((l) => isTapName(l.ifname) && l.linkinfo?.info_kind === "tun")
    .map((l) => ({
      name: l.ifname,
      bridge: l.master,
      up: (l.flags ?? []).includes("UP"),
    }));
}

/**
 * banger's taps in the current network namespace.
 *
 * @throws {TapError} when `ip` fails.
 */
export async function listTaps(): Promise<TapInfo[]> {
  try {
    return parseTapList(await runText("ip", ["-j", "-d", "link", "show"]));
  } catch (err) {
    throw new TapError(`Cannot list taps: ${because(err)}`, { cause: err });
  }
}

/**
 * Whether interface `name` exists in the calling thread's network namespace
 * (`/proc/thread-self/net/dev`, which, unlike /sys, follows setns).
 */
export function interfaceExists(name: string): boolean {
  const dev = readProcFileIfExists("/proc/thread-self/net/dev") ?? "";
  return dev.split("\n").some((line) => line.trim().startsWith(`${name}:`));
}
