/**
 * Device-mapper through `/dev/mapper/control` ioctls: create (`DM_DEV_CREATE` →
 * `DM_TABLE_LOAD` → resume), remove (retrying EBUSY, optionally deferred), status and
 * list; the pure `struct dm_ioctl` / `struct dm_target_spec` codecs; and the snapshot
 * tables banger's root disks use (reference/firecracker-and-host.md §5.1–5.3).
 *
 * No udev runs here, so devices are opened as `/dev/dm-<minor>` (devtmpfs creates that
 * node synchronously), never `/dev/mapper/<name>`.
 *
 * @module
 */

import { because, Errno, Fd, LibcError, O_RDWR, pathExists } from "../os/libc.ts";
import {
  decodeDev,
  decodeDmIoctl,
  decodeNameList,
  decodeTargetStatus,
  DM_CMD,
  DM_FLAG,
  DmError,
  type DmIoctlHeader,
  type DmTarget,
  encodeDmIoctl,
  encodeTableLoad,
} from "./_dm_codec.ts";
export * from "./_dm_codec.ts";

const CONTROL = "/dev/mapper/control";
const SECTOR = 512;
/** libdevmapper's minimum ioctl buffer; doubled on DM_BUFFER_FULL_FLAG. */
const BUFFER_SIZE = 16 * 1024;
const MAX_BUFFER_SIZE = 4 * 1024 * 1024;

/** What {@linkcode planSnapshot} needs. */
export interface SnapshotInput {
  /** Origin device (path or `major:minor`), e.g. the read-only base loop. */
  origin: string;
  /** COW device, e.g. the per-VM overlay loop. */
  cow: string;
  /** Size of the origin in 512-byte sectors. */
  originSectors: number;
  /** Size of the COW device in 512-byte sectors. */
  cowSectors: number;
  /** Chunk size in sectors (power of two). @default {8} (4 KiB) */
  chunkSectors?: number;
}

/** The tables of a root-disk snapshot: an optional zero-padded origin, then the snapshot. */
export interface SnapshotPlan {
  /** Set when the COW is larger than the origin: `linear` origin + `zero` tail. */
  paddedOrigin?: DmTarget[];
  /** `0 <sectors> snapshot <origin> <cow> P <chunk>`; build with the real origin. */
  snapshot(origin: string): DmTarget[];
  /** Size of the snapshot device in sectors. */
  sectors: number;
}

/**
 * Plans the tables for a persistent snapshot. When the COW is larger than the base, the
 * origin is padded with zeros to the COW's size so the guest sees the larger disk
 * (reference §5.1; the zero target's length is the difference, not the COW size). Pure.
 *
 * @example
 * ```ts
 * planSnapshot({ origin: "/dev/loop1", cow: "/dev/loop2", originSectors: 8, cowSectors: 8 })
 *   .snapshot("/dev/loop1"); // [{ start: 0, length: 8, type: "snapshot", params: "/dev/loop1 /dev/loop2 P 8" }]
 * ```
 */
export function planSnapshot(input: SnapshotInput): SnapshotPlan {
  const chunk = input.chunkSectors ?? 8;
  if (!Number.isInteger(chunk) || chunk < 1 || (chunk & (chunk - 1)) !== 0) {
    throw new DmError(`Cannot use chunk size ${chunk}: it must be a power of two`, {
      code: "invalid_argument",
    });
  }
  const padded = input.cowSectors > input.originSectors;
  const sectors = padded ? input.cowSectors : input.originSectors;
  return {
    sectors,
    paddedOrigin: padded
      ? [
        { start: 0, length: input.originSectors, type: "linear", params: `${input.origin} 0` },
        {
          start: input.originSectors,
          length: input.cowSectors - input.originSectors,
          type: "zero",
          params: "",
        },
      ]
      : undefined,
    snapshot: (origin) => [
      { start: 0, length: sectors, type: "snapshot", params: `${origin} ${input.cow} P ${chunk}` },
    ],
  };
}

/** Formats a table the way `dmsetup table` prints it. Pure. */
export function formatTable(targets: readonly DmTarget[]): string {
  return targets.map((t) => `${t.start} ${t.length} ${t.type}${t.params ? ` ${t.params}` : ""}`)
    .join("\n");
}

/** A snapshot target's status line, parsed. */
export type SnapshotStatus =
  | { state: "active"; allocatedSectors: number; totalSectors: number; metadataSectors: number }
  | { state: "invalid" }
  | { state: "overflow" }
  | { state: "unknown"; text: string };

/** Parses `<allocated>/<total> <metadata>`, `Invalid` or `Overflow`. Pure. */
export function parseSnapshotStatus(params: string): SnapshotStatus {
  const text = params.trim();
  const m = /^(\d+)\/(\d+) (\d+)$/.exec(text);
  if (m) {
    return {
      state: "active",
      allocatedSectors: Number(m[1]),
      totalSectors: Number(m[2]),
      metadataSectors: Number(m[3]),
    };
  }
  if (text === "Invalid") return { state: "invalid" };
  if (text === "Overflow") return { state: "overflow" };
  return { state: "unknown", text };
}

/** A live device-mapper device. */
export interface DmDevice {
  /** Its device-mapper name. */
  name: string;
  /** Block device major (dynamic for device-mapper). */
  major: number;
  /** Block device minor; names `/dev/dm-<minor>`. */
  minor: number;
  /** `/dev/dm-<minor>`. */
  devicePath: string;
}

/** What {@linkcode dmStatus} reports. */
export interface DmStatus extends DmDevice {
  /** How many openers hold the device. */
  openCount: number;
  /** Whether a live table is loaded. */
  active: boolean;
  /** The live table's targets with their status text in `params`. */
  targets: DmTarget[];
}

function deviceOf(header: DmIoctlHeader, name = header.name): DmDevice {
  const { major, minor } = decodeDev(header.dev);
  return { name, major, minor, devicePath: `/dev/dm-${minor}` };
}

/** Runs one dm ioctl, growing the buffer while the kernel reports DM_BUFFER_FULL. */
function dmCall(
  control: Fd,
  cmd: number,
  header: Partial<DmIoctlHeader>,
  operation: string,
): Uint8Array {
  for (let size = BUFFER_SIZE;; size *= 2) {
    const buf = encodeDmIoctl({ ...header, dataSize: size });
    control.ioctlPtr(cmd, buf, operation);
    if ((decodeDmIoctl(buf).flags & DM_FLAG.BUFFER_FULL) === 0 || size >= MAX_BUFFER_SIZE) {
      return buf;
    }
  }
}

function wrap(what: string, err: unknown): DmError {
  return new DmError(`${what}: ${because(err)}`, {
    code: err instanceof LibcError ? err.code : "internal",
    cause: err,
  });
}

/**
 * Whether device-mapper works here: the control node exists and answers `DM_VERSION`.
 *
 * @example
 * ```ts
 * const dm = deviceMapperSupport(); // { available: false, reason: "no /dev/mapper/control …" }
 * ```
 */
export function deviceMapperSupport(): { available: true; version: string } | {
  available: false;
  reason: string;
} {
  if (!pathExists(CONTROL)) {
    return { available: false, reason: `no ${CONTROL}: this kernel has no device-mapper` };
  }
  try {
    using control = Fd.open(CONTROL, O_RDWR, "open device-mapper control");
    const buf = dmCall(control, DM_CMD.VERSION, {}, "query device-mapper version through");
    return { available: true, version: decodeDmIoctl(buf).version.join(".") };
  } catch (err) {
    return { available: false, reason: because(err) };
  }
}

/**
 * Creates device `name` with `targets` and makes the table live.
 *
 * @throws {DmError} when any step fails; a half-created device is removed first.
 * @example
 * ```ts
 * const dev = dmCreate("bg-root-abc", planSnapshot(...).snapshot("/dev/loop1"));
 * dev.devicePath; // "/dev/dm-0"
 * ```
 */
export function dmCreate(
  name: string,
  targets: readonly DmTarget[],
  options: { readOnly?: boolean } = {},
): DmDevice {
  const what = `Cannot create device-mapper device "${name}"`;
  let control: Fd;
  try {
    control = Fd.open(CONTROL, O_RDWR, "open device-mapper control");
  } catch (err) {
    throw wrap(what, err);
  }
  using _ = control;
  let created = false;
  try {
    dmCall(control, DM_CMD.DEV_CREATE, { name }, "create device through");
    created = true;
    const load = encodeTableLoad(name, targets, options);
    control.ioctlPtr(DM_CMD.TABLE_LOAD, load, `load table "${formatTable(targets)}" through`);
    const resumed = dmCall(control, DM_CMD.DEV_SUSPEND, { name }, "resume device through");
    return deviceOf(decodeDmIoctl(resumed), name);
  } catch (err) {
    if (created) {
      try {
        dmCall(control, DM_CMD.DEV_REMOVE, { name }, "remove half-created device through");
      } catch (undo) {
        throw new DmError(`${what}: ${because(err)}; removing it also failed: ${because(undo)}`, {
          cause: err,
        });
      }
    }
    throw wrap(what, err);
  }
}

/** Options for {@linkcode dmRemove}. */
export interface DmRemoveOptions {
  /** Tries in all while the device is busy (EBUSY). @default {5} */
  attempts?: number;
  /** Milliseconds before the first retry, doubled each time. @default {50} */
  retryDelayMs?: number;
  /** Ask the kernel to remove it when its last opener closes. @default {false} */
  deferred?: boolean;
}

/**
 * Removes device `name`, retrying while it is busy (a VMM still exiting).
 *
 * @returns `false` when no such device exists.
 * @throws {DmError} when it stays busy or removal fails otherwise.
 */
export async function dmRemove(name: string, options: DmRemoveOptions = {}): Promise<boolean> {
  const attempts = options.attempts ?? 5;
  let delay = options.retryDelayMs ?? 50;
  const flags = options.deferred ? DM_FLAG.DEFERRED_REMOVE : 0;
  for (let attempt = 1;; attempt++) {
    try {
      using control = Fd.open(CONTROL, O_RDWR, "open device-mapper control");
      dmCall(control, DM_CMD.DEV_REMOVE, { name, flags }, "remove device through");
      return true;
    } catch (err) {
      if (err instanceof LibcError && err.errno === Errno.ENXIO) return false;
      const busy = err instanceof LibcError && err.errno === Errno.EBUSY;
      if (!busy || attempt >= attempts) {
        throw wrap(`Cannot remove device-mapper device "${name}"`, err);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay *= 2;
  }
}

/**
 * The live status of device `name` (`DM_TABLE_STATUS`).
 *
 * @returns `undefined` when no such device exists.
 * @throws {DmError} when the query fails.
 */
export function dmStatus(name: string): DmStatus | undefined {
  try {
    using control = Fd.open(CONTROL, O_RDWR, "open device-mapper control");
    const buf = dmCall(control, DM_CMD.TABLE_STATUS, { name }, "read status through");
    const header = decodeDmIoctl(buf);
    return {
      ...deviceOf(header, name),
      openCount: header.openCount,
      active: (header.flags & DM_FLAG.ACTIVE_PRESENT) !== 0,
      targets: decodeTargetStatus(buf),
    };
  } catch (err) {
    if (err instanceof LibcError && err.errno === Errno.ENXIO) return undefined;
    throw wrap(`Cannot read status of device-mapper device "${name}"`, err);
  }
}

/**
 * Every device-mapper device on the host.
 *
 * @throws {DmError} when the list cannot be read.
 */
export function dmList(): DmDevice[] {
  try {
    using control = Fd.open(CONTROL, O_RDWR, "open device-mapper control");
    const buf = dmCall(control, DM_CMD.LIST_DEVICES, {}, "list devices through");
    return decodeNameList(buf).map(({ name, dev }) => {
      const { major, minor } = decodeDev(dev);
      return { name, major, minor, devicePath: `/dev/dm-${minor}` };
    });
  } catch (err) {
    throw wrap("Cannot list device-mapper devices", err);
  }
}

/** Sectors (512 bytes) covering `bytes`, rounded down as the kernel does for loop sizes. */
export function bytesToSectors(bytes: number): number {
  return Math.floor(bytes / SECTOR);
}
