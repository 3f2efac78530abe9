/**
 * `PrivilegedOps`: every operation banger performs on the host as root, as one typed
 * interface. Each method takes one plain-data argument object and returns plain data, so
 * a later root-helper transport can carry each call as one JSON request and validate it
 * with the same {@linkcode PRIVILEGED_OP_ARGS} schemas the in-process implementation
 * uses. Implementations validate before touching anything: names must carry banger's
 * prefix, paths must be inside banger's directories with no symlinks
 * (`host/privileged/managed_paths.ts`), loop devices must be `/dev/loopN`, addresses must parse.
 *
 * Naming (chosen here): bridges `bg-` + 1–12 of `a-z0-9-` (not starting `bg-tap`), taps
 * `bg-tap` + 1–9 of `a-z0-9-`, dm devices `bg-root-<vmId>[-base]`, nft table `ip banger`.
 *
 * @module
 */

import { parseInterfaceAddress } from "../net/bridge.ts";
import { isBridgeName } from "../net/bridge.ts";
import { BangerError } from "../errors.ts";
import { type Ext4Check, type Ext4Op, type OwnershipEntry, XATTR_NAME } from "../disk/ext4.ts";
import { parseCidr, parseIpv4 } from "../net/ipv4.ts";
import type { KvmFacts } from "../vmm/kvm.ts";
import type { AttachedLoop } from "../disk/loop.ts";
import { parseLoopPath } from "../disk/loop.ts";
import type { NatEntry } from "../net/nat.ts";
import { SIGNAL_NAMES, signalName } from "../os/process.ts";
import type { RootDiskHandle, RootDiskStrategy, StrategyReport } from "../disk/rootdisk.ts";
import * as s from "../schema.ts";
import type { TapInfo } from "../net/tap.ts";
import { isTapName } from "../net/tap.ts";

/** A privileged call was refused before it touched anything, or its arguments are malformed. */
export class PrivilegedOpsError extends BangerError {}

const VM_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const JAIL_ID = /^[A-Za-z0-9-]{1,64}$/;
const DM_NAME = /^bg-root-[A-Za-z0-9][A-Za-z0-9_-]{0,63}(-base)?$/;
const uint32 = s.number({ int: true, min: 0, max: 0xfffffffe });
const size = s.number({ int: true, min: 1024 * 1024, max: Number.MAX_SAFE_INTEGER });
const path = s.string({ min: 1, max: 4096, expected: "an absolute path" });
const vmId = s.string({ pattern: VM_ID, expected: "a VM id (1–64 of A-Z a-z 0-9 _ -)" });
const tapName = s.refine(
  s.string(),
  'a tap name "bg-tap…" of at most 15 bytes',
  (v) => isTapName(v) ? v : undefined,
);
const bridgeName = s.refine(
  s.string(),
  'a bridge name "bg-…" of at most 15 bytes',
  (v) => isBridgeName(v) ? v : undefined,
);
const ipv4 = s.refine(
  s.string(),
  "an IPv4 address",
  (v) => parseIpv4(v) !== undefined ? v : undefined,
);
const attrs = {
  mode: s.optional(s.number({ int: true, min: 0, max: 0o7777 })),
  uid: s.optional(uint32),
  gid: s.optional(uint32),
};
const ext4OpSchemas: Record<string, s.Schema<Ext4Op>> = {
  mkdir: s.object({ kind: s.literal("mkdir"), path: s.string(), ...attrs }),
  writeFile: s.object({
    kind: s.literal("writeFile"),
    path: s.string(),
    text: s.optional(s.string()),
    base64: s.optional(s.string({ pattern: /^[A-Za-z0-9+/]*={0,2}$/, expected: "base64" })),
    hostFile: s.optional(path),
    ...attrs,
  }),
  symlink: s.object({
    kind: s.literal("symlink"),
    path: s.string(),
    target: s.string({ min: 1 }),
    uid: s.optional(uint32),
    gid: s.optional(uint32),
  }),
  setAttrs: s.object({ kind: s.literal("setAttrs"), path: s.string(), ...attrs }),
  remove: s.object({ kind: s.literal("remove"), path: s.string() }),
};
const ext4Op = s.withJson<Ext4Op>({
  expected: "an ext4 operation",
  parse(value, at = "") {
    const kind = (value as { kind?: unknown } | null)?.kind;
    const schema = typeof kind === "string" ? ext4OpSchemas[kind] : undefined;
    if (!schema) {
      throw new s.SchemaError(
        `${at}.kind`,
        `must be one of ${Object.keys(ext4OpSchemas).join(", ")}`,
      );
    }
    return schema.parse(value, at);
  },
}, () => ({ oneOf: Object.values(ext4OpSchemas).map((schema) => schema.json) }));

/** The argument schema of every method (no-argument methods take `{}`). */
export const PRIVILEGED_OP_ARGS = {
  ensureBridge: s.object({
    name: bridgeName,
    address: s.refine(
      s.string(),
      "an interface address like 172.16.0.1/24",
      (v) => parseInterfaceAddress(v) ? v : undefined,
    ),
  }),
  createTap: s.object({
    name: tapName,
    bridge: bridgeName,
    owner: s.optional(uint32),
    group: s.optional(uint32),
  }),
  deleteTap: s.object({ name: tapName }),
  checkGuestNetwork: s.object({
    bridgeName,
    cidr: s.refine(s.string(), "a CIDR like 172.16.0.0/24", (v) => parseCidr(v) ? v : undefined),
  }),
  listTaps: s.object({}),
  addNat: s.object({ vmId, guestIp: ipv4, bridge: bridgeName }),
  removeNat: s.object({ vmId }),
  guardTap: s.object({
    vmId,
    tap: tapName,
    guestIp: ipv4,
    mac: s.string({
      pattern: /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/,
      expected: "a MAC like 06:00:ac:10:00:02",
    }),
  }),
  unguardTap: s.object({ vmId }),
  listGuards: s.object({}),
  listNat: s.object({}),
  rootDiskStrategy: s.object({ dir: path }),
  createRootDisk: s.object({
    id: vmId,
    baseImage: path,
    vmDir: path,
    cowBytes: size,
    strategy: s.optional(s.literal("dm-snapshot", "reflink", "sparse-copy")),
  }),
  releaseRootDisk: s.object({
    handle: s.object({
      strategy: s.literal("dm-snapshot", "reflink", "sparse-copy"),
      devicePath: path,
      baseImage: path,
      vmFile: path,
      loops: s.array(
        s.object({
          path: s.refine(
            s.string(),
            "a loop device /dev/loopN",
            (v) => parseLoopPath(v) !== undefined ? v : undefined,
          ),
          backingFile: path,
        }),
        { max: 8 },
      ),
      dmNames: s.array(s.string({ pattern: DM_NAME, expected: "a dm name bg-root-<id>" }), {
        max: 4,
      }),
      sizeBytes: s.number({ int: true, min: 0 }),
    }),
    deleteFiles: s.optional(s.boolean()),
  }),
  listLoops: s.object({}),
  detachLoop: s.object({
    path: s.refine(
      s.string(),
      "a loop device /dev/loopN",
      (v) => parseLoopPath(v) !== undefined ? v : undefined,
    ),
  }),
  createWorkDisk: s.object({
    path,
    sizeBytes: size,
    label: s.optional(s.string({ pattern: /^[A-Za-z0-9._-]{1,16}$/, expected: "a label" })),
    fromDir: s.optional(path),
  }),
  writeExt4: s.object({ image: path, ops: s.array(ext4Op, { max: 100_000 }) }),
  applyExt4Ownership: s.object({
    image: path,
    entries: s.array(
      s.object({
        path: s.string(),
        kind: s.literal("dir", "file", "symlink"),
        uid: uint32,
        gid: uint32,
        mode: s.number({ int: true, min: 0, max: 0o7777 }),
        xattrs: s.optional(s.array(
          s.object({
            name: s.string({ pattern: XATTR_NAME, expected: "an extended attribute name" }),
            // Linux caps one value at 64 KiB.
            base64: s.string({ max: 87_384 }),
          }),
          { max: 64 },
        )),
      }),
      { max: 1_000_000 },
    ),
  }),
  readExt4File: s.object({
    image: path,
    path: s.string(),
    encoding: s.optional(s.literal("utf8", "base64")),
  }),
  dumpExt4: s.object({ image: path, path: s.string(), dest: path }),
  checkExt4: s.object({ image: path }),
  growExt4: s.object({ image: path, sizeBytes: size }),
  readProcFile: s.object({ path }),
  signalVmm: s.object({
    pid: s.number({ int: true, min: 2, max: 4_194_304 }),
    signal: s.refine(
      s.string(),
      `one of ${SIGNAL_NAMES.map((n) => JSON.stringify(n)).join(", ")} (or without "SIG")`,
      (v) => signalName(v) !== undefined ? v : undefined,
    ),
    vmDir: path,
  }),
  probeHost: s.object({}),
  launchJailedFirecracker: s.object({
    vmId: s.string({ pattern: JAIL_ID, expected: "a jailer id (1–64 of A-Z a-z 0-9 -)" }),
    vmDir: path,
    files: s.array(path, { max: 8 }),
    disks: s.optional(s.array(path, { max: 4 })),
    devices: s.optional(
      s.array(s.string({ pattern: /^\/dev\/dm-\d{1,6}$/, expected: "a device /dev/dm-N" }), {
        max: 4,
      }),
    ),
  }),
  cleanupJailedFirecracker: s.object({
    vmId: s.string({ pattern: JAIL_ID, expected: "a jailer id (1–64 of A-Z a-z 0-9 -)" }),
  }),
} as const;

/** Method names of {@linkcode PrivilegedOps}. */
export type PrivilegedOpName = keyof typeof PRIVILEGED_OP_ARGS;
/** The argument type of method `M`. */
export type OpArgs<M extends PrivilegedOpName> = s.Infer<(typeof PRIVILEGED_OP_ARGS)[M]>;

/**
 * Parses `raw` as the arguments of `method`.
 *
 * @throws {PrivilegedOpsError} `invalid_argument`, naming the field.
 * @example
 * ```ts
 * const args = parseOpArgs("deleteTap", { name: "bg-tap0" });
 * ```
 */
export function parseOpArgs<M extends PrivilegedOpName>(method: M, raw: unknown): OpArgs<M> {
  try {
    return PRIVILEGED_OP_ARGS[method].parse(raw) as OpArgs<M>;
  } catch (err) {
    if (err instanceof s.SchemaError) {
      throw new PrivilegedOpsError(`Cannot run ${method}: ${err.message}`, {
        code: "invalid_argument",
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * Every privileged host operation. Argument and result types are plain data.
 * Validation failures reject with {@linkcode PrivilegedOpsError} (or
 * `ManagedPathError`) with code `invalid_argument` or `permission_denied`, before
 * anything is touched.
 */
export interface PrivilegedOps {
  /** Creates banger's bridge if missing, gives it `address`, brings it up. Idempotent. */
  ensureBridge(args: OpArgs<"ensureBridge">): Promise<void>;
  /** Creates a persistent tap (vnet_hdr), enslaves it to `bridge`, brings it up. */
  createTap(args: OpArgs<"createTap">): Promise<void>;
  /** Deletes a tap; `false` when it did not exist. */
  deleteTap(args: OpArgs<"deleteTap">): Promise<boolean>;
  /**
   * Whether the guest network is free of other instances and interfaces (daemon start,
   * before anything is touched): bridge `bridgeName` held by another banger instance or
   * other interfaces, or a route of another interface into `cidr`.
   */
  checkGuestNetwork(args: OpArgs<"checkGuestNetwork">): Promise<GuestNetworkCheck>;
  /** This instance's taps (`bg-tap<id>-N`). */
  listTaps(args?: OpArgs<"listTaps">): Promise<TapInfo[]>;
  /** Installs or replaces a VM's NAT rules; enables ip_forward. */
  addNat(args: OpArgs<"addNat">): Promise<void>;
  /** Removes a VM's NAT rules; `false` when it had none. */
  removeNat(args: OpArgs<"removeNat">): Promise<boolean>;
  /** Which VMs have NAT rules installed. */
  listNat(args?: OpArgs<"listNat">): Promise<NatEntry[]>;
  /** Lets the VM's tap send only from its own MAC and IPv4 address (anti-spoofing). */
  guardTap(args: OpArgs<"guardTap">): Promise<void>;
  /** Removes a VM's tap guard; `false` when it had none. */
  unguardTap(args: OpArgs<"unguardTap">): Promise<boolean>;
  /** Which VMs have a tap guard. */
  listGuards(args?: OpArgs<"listGuards">): Promise<string[]>;
  /** Which root-disk strategy this host would use for VM files in `dir` (doctor). */
  rootDiskStrategy(args: OpArgs<"rootDiskStrategy">): Promise<StrategyReport>;
  /** Makes a VM's copy-on-write root disk; the handle is plain JSON to persist. */
  createRootDisk(args: OpArgs<"createRootDisk">): Promise<RootDiskHandle>;
  /** Releases a root disk from its (possibly persisted) handle; keeps going on errors. */
  releaseRootDisk(args: OpArgs<"releaseRootDisk">): Promise<void>;
  /** Loop devices backed by files inside banger's directories. */
  listLoops(args?: OpArgs<"listLoops">): Promise<AttachedLoop[]>;
  /** Detaches a loop device whose backing file is banger's; `false` when not attached. */
  detachLoop(args: OpArgs<"detachLoop">): Promise<boolean>;
  /** Truncates + `mkfs.ext4` (lazy init, root-owned root; `fromDir` for image builds). */
  createWorkDisk(args: OpArgs<"createWorkDisk">): Promise<void>;
  /** Applies ext4 operations in one debugfs run. */
  writeExt4(args: OpArgs<"writeExt4">): Promise<void>;
  /** Restores owners/modes after `mkfs.ext4 -d`. */
  applyExt4Ownership(args: OpArgs<"applyExt4Ownership">): Promise<void>;
  /** Reads one file from an ext4 image (UTF-8 text, or base64). */
  readExt4File(args: OpArgs<"readExt4File">): Promise<string>;
  /** Copies a tree out of an ext4 image into a managed directory. */
  dumpExt4(args: OpArgs<"dumpExt4">): Promise<void>;
  /** `e2fsck -fn`; a dirty filesystem is reported, not thrown. */
  checkExt4(args: OpArgs<"checkExt4">): Promise<Ext4Check>;
  /** Grows an ext4 image file and its filesystem. */
  growExt4(args: OpArgs<"growExt4">): Promise<void>;
  /**
   * Reads a `/proc` or `/sys` file (liveness, doctor): `/proc/<pid>/{stat,status,cmdline}`,
   * `/proc/{cpuinfo,meminfo,loadavg,uptime,version}` and `/sys/{block,class/net,module}/…`.
   */
  readProcFile(args: OpArgs<"readProcFile">): Promise<string>;
  /**
   * Sends `signal` to a VMM: only to a process whose command line names a file directly
   * inside `vmDir` (itself inside banger's directories) and, for the root helper, that runs
   * as the owner; any other process is refused with `permission_denied`.
   *
   * @returns `false` when no such process runs (gone, or a zombie).
   */
  signalVmm(args: OpArgs<"signalVmm">): Promise<boolean>;
  /** What the owner daemon cannot see itself: `/dev` nodes, KVM, CPU flags and clock. */
  probeHost(args?: OpArgs<"probeHost">): Promise<HostFacts>;
  /**
   * Starts Firecracker under the configured jailer as the owner uid: links `files` (and
   * makes nodes for `devices`) at the same absolute paths inside a fresh chroot, then runs
   * the jailer detached. The API socket appears at `apiSocket` (inside the chroot).
   */
  launchJailedFirecracker(args: OpArgs<"launchJailedFirecracker">): Promise<JailedLaunch>;
  /** Removes a jailed VMM's chroot once its process is gone; `false` when there was none. */
  cleanupJailedFirecracker(args: OpArgs<"cleanupJailedFirecracker">): Promise<boolean>;
}

/** What {@linkcode PrivilegedOps.checkGuestNetwork} found. */
export interface GuestNetworkCheck {
  /** What holds the network, as a sentence; absent when it is free. */
  conflict?: string;
  /** A /24 no route touches, to suggest. */
  freeCidr?: string;
  /** This instance's id (`host/instance.ts`), for messages. */
  instanceId: string;
}

/** What {@linkcode PrivilegedOps.launchJailedFirecracker} started. */
export interface JailedLaunch {
  /** The jailed Firecracker's pid (the jailer execs it in place). */
  pid: number;
  /** The jail's root directory on the host. */
  chrootDir: string;
  /** Host path of the API socket inside the chroot (`<chrootDir><vmDir>/fc.sock`). */
  apiSocket: string;
  /** Host path of the console log (Firecracker's stdout and stderr). */
  serialLog: string;
}

/** Which device nodes exist, for the VMM choice and `banger doctor`. */
export interface HostDevices {
  /** `/dev/vhost-vsock`: QEMU guests get a vsock device. */
  vhostVsock: boolean;
  /** `/dev/net/tun`: taps can be opened. */
  netTun: boolean;
  /** `/dev/loop-control`: loop devices (for dm snapshots). */
  loopControl: boolean;
  /** `/dev/mapper/control`: device-mapper. */
  mapperControl: boolean;
}

/** What {@linkcode PrivilegedOps.probeHost} found. */
export interface HostFacts {
  /** `/dev/kvm`, decided by `classifyKvm` (`host/vmm/kvm.ts`); accessible for the VMM user. */
  kvm: KvmFacts;
  /** Device nodes. */
  devices: HostDevices;
  /** The CPU clock in kHz (QEMU's `tsc_early_khz`); absent when `/proc/cpuinfo` has none. */
  cpuKhz?: number;
}

/**
 * The slice of {@linkcode PrivilegedOps} that watches and signals VMM processes: what
 * `host/vmm/firecracker/firecracker.ts`, `host/vmm/qemu/qemu.ts` and the VMM drivers need for a VMM they did not
 * start themselves.
 */
export type VmmProcessOps = Pick<PrivilegedOps, "readProcFile" | "signalVmm">;

/** Re-exported for implementations. */
export type { Ext4Op, OwnershipEntry, RootDiskStrategy };
