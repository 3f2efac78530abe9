/**
 * Pure codecs for the device-mapper ioctl structs: `struct dm_ioctl` (312 bytes),
 * `struct dm_target_spec` (40 bytes) followed by 8-byte-aligned params, and the
 * `dm_name_list` chain. No `Deno.*` calls. Folder-private; `host/disk/dm.ts` re-exports it.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import { BangerError } from "../errors.ts";

// <linux/dm-ioctl.h> (uapi 4.47.0; layout checked with gcc, reference §5.3)
/** sizeof(struct dm_ioctl). */
export const DM_IOCTL_SIZE = 312;
/** sizeof(struct dm_target_spec). */
export const DM_TARGET_SPEC_SIZE = 40;
/** `name` field size, including the NUL. */
export const DM_NAME_LEN = 128;
/** `uuid` field size, including the NUL. */
export const DM_UUID_LEN = 129;
/** `target_type` field size, including the NUL. */
export const DM_MAX_TYPE_NAME = 16;
/** `_IOWR(0xfd, nr, struct dm_ioctl)` for each command used. */
export const DM_CMD = {
  VERSION: 0xc138fd00,
  LIST_DEVICES: 0xc138fd02,
  DEV_CREATE: 0xc138fd03,
  DEV_REMOVE: 0xc138fd04,
  DEV_SUSPEND: 0xc138fd06,
  DEV_STATUS: 0xc138fd07,
  TABLE_LOAD: 0xc138fd09,
  TABLE_STATUS: 0xc138fd0c,
} as const;
/** `dm_ioctl.flags` bits. */
export const DM_FLAG = {
  READONLY: 1 << 0,
  SUSPEND: 1 << 1,
  STATUS_TABLE: 1 << 4,
  ACTIVE_PRESENT: 1 << 5,
  BUFFER_FULL: 1 << 8,
  DEFERRED_REMOVE: 1 << 17,
} as const;
/** The interface version banger speaks: major 4, any minor (the kernel checks `<=`). */
export const DM_VERSION: readonly [number, number, number] = [4, 0, 0];

/** A device-mapper operation failed. */
export class DmError extends BangerError {}

/** The header fields of a `struct dm_ioctl`. */
export interface DmIoctlHeader {
  /** Interface version; in: what we speak, out: the kernel's. */
  version: [number, number, number];
  /** Total buffer size, header included. */
  dataSize: number;
  /** Offset of the payload from the start of the header. */
  dataStart: number;
  /** Number of target specs in the payload. */
  targetCount: number;
  /** Out: how many openers hold the device. */
  openCount: number;
  /** `DM_FLAG` bits. */
  flags: number;
  /** Event counter (udev cookie on input). */
  eventNr: number;
  /** Kernel-encoded dev_t (see {@linkcode decodeDev}). */
  dev: bigint;
  /** Device name (under 128 bytes). */
  name: string;
  /** Optional uuid (under 129 bytes). */
  uuid: string;
}

/** One line of a dm table: `<start> <length> <type> <params>`, in 512-byte sectors. */
export interface DmTarget {
  /** First sector it maps. */
  start: number;
  /** Sectors it maps. */
  length: number;
  /** Target type: `snapshot`, `linear`, `zero`, … (under 16 bytes). */
  type: string;
  /** Its parameters (on status: its status text). */
  params: string;
}

function putString(buf: Uint8Array, at: number, size: number, text: string, what: string) {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length >= size || bytes.includes(0)) {
    throw new DmError(`Cannot encode ${what} "${text}": it must be under ${size} bytes`, {
      code: "invalid_argument",
    });
  }
  buf.set(bytes, at);
}

/**
 * Encodes a `struct dm_ioctl` header at the start of a zeroed buffer of `dataSize`
 * bytes. Pure.
 *
 * @throws {DmError} when the name or uuid does not fit.
 */
export function encodeDmIoctl(header: Partial<DmIoctlHeader> & { dataSize: number }): Uint8Array {
  if (header.dataSize < DM_IOCTL_SIZE) {
    throw new RangeError(`Cannot encode dm_ioctl in ${header.dataSize} bytes`);
  }
  const buf = new Uint8Array(header.dataSize);
  const dv = new DataView(buf.buffer);
  const version = header.version ?? DM_VERSION;
  version.forEach((v, i) => dv.setUint32(i * 4, v, true));
  dv.setUint32(12, header.dataSize, true);
  dv.setUint32(16, header.dataStart ?? DM_IOCTL_SIZE, true);
  dv.setUint32(20, header.targetCount ?? 0, true);
  dv.setInt32(24, header.openCount ?? 0, true);
  dv.setUint32(28, header.flags ?? 0, true);
  dv.setUint32(32, header.eventNr ?? 0, true);
  dv.setBigUint64(40, header.dev ?? 0n, true);
  putString(buf, 48, DM_NAME_LEN, header.name ?? "", "device-mapper name");
  putString(buf, 176, DM_UUID_LEN, header.uuid ?? "", "device-mapper uuid");
  return buf;
}

/** Decodes the `struct dm_ioctl` header at the start of `buf`. Pure. */
export function decodeDmIoctl(buf: Uint8Array): DmIoctlHeader {
  if (buf.length < DM_IOCTL_SIZE) throw new RangeError(`Cannot decode dm_ioctl: short buffer`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const str = (at: number, size: number) => {
    const field = buf.subarray(at, at + size);
    const end = field.indexOf(0);
    return new TextDecoder().decode(end === -1 ? field : field.subarray(0, end));
  };
  return {
    version: [dv.getUint32(0, true), dv.getUint32(4, true), dv.getUint32(8, true)],
    dataSize: dv.getUint32(12, true),
    dataStart: dv.getUint32(16, true),
    targetCount: dv.getUint32(20, true),
    openCount: dv.getInt32(24, true),
    flags: dv.getUint32(28, true),
    eventNr: dv.getUint32(32, true),
    dev: dv.getBigUint64(40, true),
    name: str(48, DM_NAME_LEN),
    uuid: str(176, DM_UUID_LEN),
  };
}

/** Splits the kernel's `huge_encode_dev` value into major and minor. Pure. */
export function decodeDev(dev: bigint): { major: number; minor: number } {
  return {
    major: Number((dev >> 8n) & 0xfffn),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & 0xfff00n)),
  };
}

const align8 = (n: number) => (n + 7) & ~7;

/**
 * Encodes target specs for `DM_TABLE_LOAD`: each spec is followed by its NUL-terminated
 * params padded to 8 bytes, and `next` is the distance to the following spec. Pure.
 *
 * @throws {DmError} when a type name is too long or params hold control characters.
 */
export function encodeTargets(targets: readonly DmTarget[]): Uint8Array {
  const parts = targets.map((t) => {
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x1f\x7f\\]/.test(t.params)) {
      throw new DmError(`Cannot encode dm target params "${t.params}": control character`, {
        code: "invalid_argument",
      });
    }
    const params = new TextEncoder().encode(t.params);
    const size = DM_TARGET_SPEC_SIZE + align8(params.length + 1);
    const spec = new Uint8Array(size);
    const dv = new DataView(spec.buffer);
    dv.setBigUint64(0, BigInt(t.start), true);
    dv.setBigUint64(8, BigInt(t.length), true);
    dv.setUint32(20, size, true);
    putString(spec, 24, DM_MAX_TYPE_NAME, t.type, "dm target type");
    spec.set(params, DM_TARGET_SPEC_SIZE);
    return spec;
  });
  return concatBytes(parts);
}

/** The whole `DM_TABLE_LOAD` buffer for `name`. Pure. */
export function encodeTableLoad(
  name: string,
  targets: readonly DmTarget[],
  options: { readOnly?: boolean } = {},
): Uint8Array {
  const specs = encodeTargets(targets);
  const buf = encodeDmIoctl({
    dataSize: DM_IOCTL_SIZE + specs.length,
    targetCount: targets.length,
    flags: options.readOnly ? DM_FLAG.READONLY : 0,
    name,
  });
  buf.set(specs, DM_IOCTL_SIZE);
  return buf;
}

/**
 * Decodes the targets `DM_TABLE_STATUS` wrote after the header; there `next` is the
 * offset of the following spec from `data_start`. Pure.
 */
export function decodeTargetStatus(buf: Uint8Array): DmTarget[] {
  const header = decodeDmIoctl(buf);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: DmTarget[] = [];
  let offset = 0;
  for (let i = 0; i < header.targetCount; i++) {
    const at = header.dataStart + offset;
    if (at + DM_TARGET_SPEC_SIZE > buf.length) break;
    const typeField = buf.subarray(at + 24, at + 24 + DM_MAX_TYPE_NAME);
    const paramsField = buf.subarray(at + DM_TARGET_SPEC_SIZE, header.dataSize);
    const cut = (f: Uint8Array) => f.subarray(0, f.indexOf(0) === -1 ? f.length : f.indexOf(0));
    out.push({
      start: Number(dv.getBigUint64(at, true)),
      length: Number(dv.getBigUint64(at + 8, true)),
      type: new TextDecoder().decode(cut(typeField)),
      params: new TextDecoder().decode(cut(paramsField)),
    });
    offset = dv.getUint32(at + 20, true);
  }
  return out;
}

/** Decodes the `struct dm_name_list` chain `DM_LIST_DEVICES` wrote. Pure. */
export function decodeNameList(buf: Uint8Array): { name: string; dev: bigint }[] {
  const header = decodeDmIoctl(buf);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: { name: string; dev: bigint }[] = [];
  let at = header.dataStart;
  for (;;) {
    if (at + 12 > buf.length) break;
    const dev = dv.getBigUint64(at, true);
    if (dev === 0n) break; // the kernel's "no devices" marker
    const nameField = buf.subarray(at + 12, Math.min(at + 12 + DM_NAME_LEN, buf.length));
    const end = nameField.indexOf(0);
    out.push({ name: new TextDecoder().decode(nameField.subarray(0, end)), dev });
    const next = dv.getUint32(at + 8, true);
    if (next === 0) break;
    at += next;
  }
  return out;
}
