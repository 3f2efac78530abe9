/**
 * {@linkcode InProcessOps}: `PrivilegedOps` run inside the calling process (which must
 * be root). Every call parses its arguments with `PRIVILEGED_OP_ARGS` and checks every
 * path against banger's managed directories before doing anything.
 *
 * @module
 */

import { probeHostFacts, vmmUser } from "./_host_probe.ts";
import { processExists } from "./_signal.ts";
import { signalVmmProcess } from "./_vmm_signal.ts";
import { encodeBase64 } from "../bytes.ts";
import { ensureBridge, parseInterfaceAddress } from "../net/bridge.ts";
import {
  applyExt4Ownership,
  checkExt4,
  createExt4,
  dumpExt4,
  type Ext4Check,
  type Ext4Op,
  growExt4,
  readExt4File,
  writeExt4,
} from "../disk/ext4.ts";
import {
  jailPaths,
  prepareJailChroot,
  renderJailerArgs,
  spawnJailer,
} from "../vmm/firecracker/jailer.ts";
import { type Layout, vmFiles } from "../layout.ts";
import { type AttachedLoop, detachLoop, listLoops, loopBackingFile } from "../disk/loop.ts";
import { canonicalPath, ManagedPaths } from "./managed_paths.ts";
import { addNat, listNat, type NatEntry, removeNat } from "../net/nat.ts";
import type { GuestNetwork } from "../net/defaults.ts";
import { type Cidr, cidrContains, formatIpv4, parseCidr, parseIpv4 } from "../net/ipv4.ts";
import {
  createOwnedRootDisk,
  type FileOwner,
  ownedRootDiskStrategy,
  releaseOwnedRootDisk,
} from "../disk/owned_root_disk.ts";
import {
  type GuestNetworkCheck,
  type HostFacts,
  type JailedLaunch,
  type OpArgs,
  parseOpArgs,
  type PrivilegedOpName,
  type PrivilegedOps,
  PrivilegedOpsError,
} from "./privileged_ops.ts";
import { readProcFile, readProcFileIfExists } from "../os/procfs.ts";
import { hostMountOf } from "../os/mounts.ts";
import {
  createRootDisk,
  releaseRootDisk,
  type RootDiskHandle,
  rootDiskStrategy,
  type StrategyReport,
} from "../disk/rootdisk.ts";
import { createTap, deleteTap, listTaps, type TapInfo } from "../net/tap.ts";
import { type Instance, instanceFor, tapIndex } from "../instance.ts";
import { dmBackingFiles } from "../disk/dm_sysfs.ts";
import { findNetworkConflict, freeCidr, parseRoutes } from "../net/conflicts.ts";
import { addGuard, listGuards, removeGuard } from "../net/guard.ts";

const DELETED = " (deleted)";
/** The `/proc` and `/sys` files callers may read: liveness, stats, doctor, loop discovery. */
const READABLE_PROC = [
  /^\/proc\/[1-9][0-9]{0,9}\/(stat|status|cmdline)$/,
  /^\/proc\/(cpuinfo|meminfo|loadavg|uptime|version)$/,
  /^\/proc\/sys\/net\/ipv4\/ip_forward$/,
  /^\/sys\/(block|class\/net|class\/block|module)\/[A-Za-z0-9_.:-]+(\/[A-Za-z0-9_.:-]+){0,3}$/,
];

/** Options of {@linkcode InProcessOps}. */
export interface InProcessOpsOptions {
  /**
   * The unprivileged user the results are for (root helper mode): root disks, jail
   * directories and device nodes are handed to it, taps are created with it as
   * `TUNSETOWNER`, and files in its directories are reached only through
   * symlink-refusing descriptors. Unset: everything stays root's (one process as root).
   */
  owner?: FileOwner;
  /**
   * The one guest network this helper serves (from root's config): the bridge and its
   * address are the only ones it makes, taps join only that bridge, NAT only addresses in
   * its CIDR. Unset: any valid name, address and source (one process as root).
   */
  network?: GuestNetwork;
  /** How to run Firecracker under the jailer; unset: jailed launches are refused. */
  jailer?: {
    /** The jailer binary (absolute). */
    jailerBin: string;
    /** The Firecracker binary the jailer copies into each chroot (absolute). */
    firecrackerBin: string;
    /** `--chroot-base-dir`: root-owned, on the same filesystem as the state dir. */
    chrootBase: string;
  };
}

/**
 * Runs privileged operations in this process.
 *
 * @example
 * ```ts
 * const ops: PrivilegedOps = new InProcessOps(layout);
 * await ops.ensureBridge({ name: "bg-br0", address: "172.16.0.1/24" });
 * ```
 */
export class InProcessOps implements PrivilegedOps {
  readonly #paths: ManagedPaths;
  readonly #options: InProcessOpsOptions;
  /** The instance of `layout.stateDir`: the only taps and nft table this touches. */
  readonly #instance: Instance;
  /** `options.network`, parsed once: its CIDR and the bridge's `address/prefix`. */
  readonly #network?: GuestNetwork & { range: Cidr; bridgeAddress: string };

  /**
   * Operates inside `layout`'s state, cache and runtime directories only.
   *
   * @throws {PrivilegedOpsError} `invalid_argument` when `options.network.cidr` does not parse.
   */
  constructor(
    layout: Pick<Layout, "stateDir" | "cacheDir" | "runtimeDir">,
    options: InProcessOpsOptions = {},
  ) {
    this.#paths = new ManagedPaths(layout);
    this.#options = options;
    this.#instance = instanceFor(layout.stateDir);
    const net = options.network;
    if (net) {
      const range = parseCidr(net.cidr);
      if (!range) {
        throw new PrivilegedOpsError(`Cannot serve guest network "${net.cidr}": it is not a CIDR`, {
          code: "invalid_argument",
        });
      }
      this.#network = { ...net, range, bridgeAddress: `${net.bridgeIp}/${range.prefixLength}` };
    }
  }

  #args<M extends PrivilegedOpName>(method: M, raw: unknown): OpArgs<M> {
    return parseOpArgs(method, raw ?? {});
  }

  #file(path: string, what: string): Promise<string> {
    return this.#paths.check(path, { mustExist: true, kind: "file" }, what);
  }

  #dir(path: string, what: string): Promise<string> {
    return this.#paths.check(path, { mustExist: true, kind: "dir" }, what);
  }

  async ensureBridge(raw: OpArgs<"ensureBridge">): Promise<void> {
    const args = this.#args("ensureBridge", raw);
    const net = this.#network;
    if (net) {
      if (args.name !== net.bridgeName || args.address !== net.bridgeAddress) {
        throw new PrivilegedOpsError(
          `Cannot make bridge "${args.name}" with ${args.address}: this helper serves only ` +
            `bridge "${net.bridgeName}" with ${net.bridgeAddress}`,
          {
            code: "permission_denied",
            hint:
              "bridge_name, bridge_ip and cidr are set in root's config (/etc/banger/config.toml)",
          },
        );
      }
    }
    const conflict = findNetworkConflict({
      instance: this.#instance,
      bridgeName: args.name,
      cidr: networkOf(args.address),
    });
    if (conflict) {
      throw new PrivilegedOpsError(`Cannot set up bridge "${args.name}": ${conflict}`, {
        code: "conflict",
      });
    }
    await ensureBridge({ ...args, alias: this.#instance.bridgeAlias });
  }

  /** Refuses a tap name without this instance's prefix: another instance's, or nobody's. */
  #ownTap(name: string, what: string): void {
    if (tapIndex(this.#instance, name) === undefined) {
      throw new PrivilegedOpsError(
        `Cannot ${what} tap "${name}": this instance's taps are ${this.#instance.tapPrefix}<N> ` +
          `(state dir ${this.#instance.stateDir})`,
        { code: "permission_denied" },
      );
    }
  }

  async createTap(raw: OpArgs<"createTap">): Promise<void> {
    const { name, ...options } = this.#args("createTap", raw);
    this.#ownTap(name, "create");
    const net = this.#network;
    if (net && options.bridge !== net.bridgeName) {
      throw new PrivilegedOpsError(
        `Cannot attach tap "${name}" to "${options.bridge}": this helper serves only bridge "${net.bridgeName}"`,
        { code: "permission_denied" },
      );
    }
    const owner = this.#options.owner;
    if (owner) {
      if (options.owner !== undefined && options.owner !== owner.uid) {
        throw new PrivilegedOpsError(
          `Cannot create tap "${name}" for uid ${options.owner}: taps belong to uid ${owner.uid}`,
          { code: "permission_denied" },
        );
      }
      options.owner = owner.uid;
      if (options.group !== undefined && options.group !== owner.gid) {
        throw new PrivilegedOpsError(
          `Cannot create tap "${name}" for group ${options.group}: taps belong to the owner's group ${owner.gid}`,
          { code: "permission_denied" },
        );
      }
    }
    await createTap(name, options);
  }

  async deleteTap(raw: OpArgs<"deleteTap">): Promise<boolean> {
    const { name } = this.#args("deleteTap", raw);
    this.#ownTap(name, "delete");
    return await deleteTap(name);
  }

  checkGuestNetwork(raw: OpArgs<"checkGuestNetwork">): Promise<GuestNetworkCheck> {
    return settle(() => {
      const args = this.#args("checkGuestNetwork", raw);
      const net = this.#network;
      const claim = net
        ? { bridgeName: net.bridgeName, cidr: net.cidr }
        : { bridgeName: args.bridgeName, cidr: args.cidr };
      const conflict = findNetworkConflict({ ...claim, instance: this.#instance });
      const free = conflict ? freeCidr(parseRoutes(readProcFile("/proc/net/route"))) : undefined;
      return { conflict, freeCidr: free, instanceId: this.#instance.id };
    });
  }

  async listTaps(raw?: OpArgs<"listTaps">): Promise<TapInfo[]> {
    this.#args("listTaps", raw);
    return (await listTaps()).filter((t) => tapIndex(this.#instance, t.name) !== undefined);
  }

  async addNat(raw: OpArgs<"addNat">): Promise<void> {
    const args = this.#args("addNat", raw);
    const net = this.#network;
    if (net) {
      if (
        args.bridge !== net.bridgeName || !this.#inGuestRange(args.guestIp) ||
        args.guestIp === net.bridgeIp
      ) {
        throw new PrivilegedOpsError(
          `Cannot NAT ${args.guestIp} on "${args.bridge}": this helper NATs only guests of ` +
            `${net.cidr} behind bridge "${net.bridgeName}"`,
          { code: "permission_denied" },
        );
      }
    }
    await addNat(args, this.#instance.nftTable);
  }

  async removeNat(raw: OpArgs<"removeNat">): Promise<boolean> {
    return await removeNat(this.#args("removeNat", raw).vmId, this.#instance.nftTable);
  }

  async listNat(raw?: OpArgs<"listNat">): Promise<NatEntry[]> {
    this.#args("listNat", raw);
    return await listNat(this.#instance.nftTable);
  }

  async guardTap(raw: OpArgs<"guardTap">): Promise<void> {
    const args = this.#args("guardTap", raw);
    this.#ownTap(args.tap, "guard");
    const net = this.#network;
    if (net && !this.#inGuestRange(args.guestIp)) {
      throw new PrivilegedOpsError(
        `Cannot guard tap "${args.tap}" for ${args.guestIp}: this helper serves guests of ${net.cidr}`,
        { code: "permission_denied" },
      );
    }
    await addGuard(args, this.#instance.nftTable);
  }

  /** Whether `address` lies in the guest network this helper serves. */
  #inGuestRange(address: string): boolean {
    const ip = parseIpv4(address);
    return this.#network !== undefined && ip !== undefined &&
      cidrContains(this.#network.range, ip);
  }

  async unguardTap(raw: OpArgs<"unguardTap">): Promise<boolean> {
    return await removeGuard(this.#args("unguardTap", raw).vmId, this.#instance.nftTable);
  }

  async listGuards(raw?: OpArgs<"listGuards">): Promise<string[]> {
    this.#args("listGuards", raw);
    return await listGuards(this.#instance.nftTable);
  }

  async rootDiskStrategy(raw: OpArgs<"rootDiskStrategy">): Promise<StrategyReport> {
    const { dir } = this.#args("rootDiskStrategy", raw);
    await this.#dir(dir, "directory");
    if (this.#options.owner) return ownedRootDiskStrategy(dir);
    return await rootDiskStrategy(dir);
  }

  async createRootDisk(raw: OpArgs<"createRootDisk">): Promise<RootDiskHandle> {
    const args = this.#args("createRootDisk", raw);
    await this.#file(args.baseImage, "base image");
    await this.#paths.check(args.vmDir, { kind: "dir" }, "VM directory");
    const owner = this.#options.owner;
    return owner ? await createOwnedRootDisk(args, owner) : await createRootDisk(args);
  }

  async releaseRootDisk(raw: OpArgs<"releaseRootDisk">): Promise<void> {
    const { handle, deleteFiles } = this.#args("releaseRootDisk", raw);
    // Files may already be gone after a crash: check spelling and symlinks, not existence.
    await this.#paths.check(handle.vmFile, { kind: "file" }, "VM file");
    this.#paths.checkLexical(handle.baseImage, "base image");
    for (const loop of handle.loops) {
      this.#paths.checkLexical(loop.backingFile, "loop backing file");
    }
    const device = handle.devicePath;
    const deviceOk = /^\/dev\/dm-\d+$/.test(device) || device === handle.vmFile;
    if (!deviceOk) {
      throw new PrivilegedOpsError(
        `Cannot release root disk "${device}": its device must be /dev/dm-N or its VM file`,
        { code: "invalid_argument" },
      );
    }
    for (const name of handle.dmNames) this.#ownDm(name);
    if (this.#options.owner) await releaseOwnedRootDisk(handle, { deleteFiles });
    else await releaseRootDisk(handle, { deleteFiles });
  }

  /**
   * Refuses to remove a dm device that exists but is not backed (through its loops) by
   * files in this instance's directories: another instance's root disk, or the host's.
   */
  #ownDm(name: string): void {
    const files = dmBackingFiles(name);
    if (files === undefined) return; // gone already: nothing to remove
    const foreign = files.filter((f) => this.#managedBacking(f) === undefined);
    if (files.length === 0 || foreign.length) {
      throw new PrivilegedOpsError(
        `Cannot remove device-mapper device "${name}": it is not a root disk of this instance ` +
          `(${
            files.length
              ? `backed by ${foreign.map((f) => `"${f}"`).join(", ")}`
              : "no loop devices"
          })`,
        { code: "permission_denied" },
      );
    }
  }

  listLoops(raw?: OpArgs<"listLoops">): Promise<AttachedLoop[]> {
    return settle(() => {
      this.#args("listLoops", raw);
      return listLoops().filter((l) => this.#managedBacking(l.backingFile) !== undefined);
    });
  }

  detachLoop(raw: OpArgs<"detachLoop">): Promise<boolean> {
    return settle(() => {
      const { path } = this.#args("detachLoop", raw);
      const backing = loopBackingFile(path);
      if (backing === undefined) return false;
      if (this.#managedBacking(backing) === undefined) {
        throw new PrivilegedOpsError(
          `Cannot detach "${path}": its backing file "${backing}" is outside banger's directories`,
          { code: "permission_denied" },
        );
      }
      return detachLoop(path);
    });
  }

  /** The backing file without the " (deleted)" mark, when it is inside a managed root. */
  #managedBacking(backing: string): string | undefined {
    const file = backing.endsWith(DELETED) ? backing.slice(0, -DELETED.length) : backing;
    return canonicalPath(file) === file && this.#paths.inside(file) ? file : undefined;
  }

  async createWorkDisk(raw: OpArgs<"createWorkDisk">): Promise<void> {
    const args = this.#args("createWorkDisk", raw);
    await this.#paths.check(args.path, { kind: "file" }, "disk image");
    if (args.fromDir !== undefined) await this.#dir(args.fromDir, "source directory");
    await createExt4(args);
  }

  async writeExt4(raw: OpArgs<"writeExt4">): Promise<void> {
    const { image, ops } = this.#args("writeExt4", raw);
    await this.#file(image, "disk image");
    for (const op of ops) {
      if (op.kind === "writeFile" && op.hostFile !== undefined) {
        await this.#file(op.hostFile, "host file");
      }
    }
    // Confined: the image may be a work disk the guest wrote (host/disk/_confined.ts).
    await writeExt4(image, ops as Ext4Op[], { confined: true });
  }

  async applyExt4Ownership(raw: OpArgs<"applyExt4Ownership">): Promise<void> {
    const { image, entries } = this.#args("applyExt4Ownership", raw);
    await applyExt4Ownership(await this.#file(image, "disk image"), entries);
  }

  async readExt4File(raw: OpArgs<"readExt4File">): Promise<string> {
    const { image, path, encoding } = this.#args("readExt4File", raw);
    const bytes = await readExt4File(await this.#file(image, "disk image"), path);
    if (encoding === "base64") return encodeBase64(bytes);
    return new TextDecoder().decode(bytes);
  }

  async dumpExt4(raw: OpArgs<"dumpExt4">): Promise<void> {
    const { image, path, dest } = this.#args("dumpExt4", raw);
    await dumpExt4(
      await this.#file(image, "disk image"),
      path,
      await this.#dir(dest, "destination"),
    );
  }

  async checkExt4(raw: OpArgs<"checkExt4">): Promise<Ext4Check> {
    const { image } = this.#args("checkExt4", raw);
    return await checkExt4(await this.#file(image, "disk image"));
  }

  async growExt4(raw: OpArgs<"growExt4">): Promise<void> {
    const { image, sizeBytes } = this.#args("growExt4", raw);
    await growExt4(await this.#file(image, "disk image"), sizeBytes, { confined: true });
  }

  readProcFile(raw: OpArgs<"readProcFile">): Promise<string> {
    return settle(() => {
      const { path } = this.#args("readProcFile", raw);
      if (canonicalPath(path) !== path || !READABLE_PROC.some((r) => r.test(path))) {
        throw new PrivilegedOpsError(
          `Cannot read "${path}": only process stat/status/cmdline, cpuinfo-style and ` +
            "/sys/{block,class,module} files can be read",
          { code: "permission_denied" },
        );
      }
      return readProcFile(path);
    });
  }

  signalVmm(raw: OpArgs<"signalVmm">): Promise<boolean> {
    return settle(() =>
      signalVmmProcess(this.#args("signalVmm", raw), {
        paths: this.#paths,
        ownerUid: this.#options.owner?.uid,
      })
    );
  }

  probeHost(raw?: OpArgs<"probeHost">): Promise<HostFacts> {
    return settle(() => {
      this.#args("probeHost", raw);
      const owner = this.#options.owner;
      return probeHostFacts(owner ? vmmUser(owner.uid, owner.gid) : undefined);
    });
  }

  async launchJailedFirecracker(raw: OpArgs<"launchJailedFirecracker">): Promise<JailedLaunch> {
    const args = this.#args("launchJailedFirecracker", raw);
    const { jailer, owner } = this.#jailConfig("launch Firecracker for", args.vmId);
    for (const device of args.devices ?? []) ownRootDiskDevice(device, args.vmId);
    await this.#dir(args.vmDir, "VM directory");
    const disks = args.disks ?? [];
    for (const f of [...args.files, ...disks]) await this.#file(f, "VM file");
    await refuseNodev(jailer.chrootBase);
    const execFile = await Deno.realPath(jailer.firecrackerBin);
    const paths = jailPaths(jailer.chrootBase, execFile, args.vmId);
    const { jailDir, chrootDir, serialLog } = paths;
    if (await Deno.lstat(jailDir).then(() => true, () => false)) {
      if (!(await this.cleanupJailedFirecracker({ vmId: args.vmId }))) {
        throw new PrivilegedOpsError(`Cannot reuse the jail "${jailDir}"`, { code: "conflict" });
      }
    }
    await prepareJailChroot({
      chrootBaseDir: jailer.chrootBase,
      chrootDir,
      vmDir: args.vmDir,
      files: args.files,
      disks,
      devices: args.devices,
      ...owner,
    });
    const apiSocket = `${args.vmDir}/${vmFiles.apiSocket}`;
    const argv = renderJailerArgs({
      id: args.vmId,
      execFile,
      uid: owner.uid,
      gid: owner.gid,
      chrootBaseDir: jailer.chrootBase,
      firecrackerArgs: ["--api-sock", apiSocket],
    });
    const pid = spawnJailer(jailer.jailerBin, argv, serialLog, owner);
    return { pid, chrootDir, apiSocket: `${chrootDir}${apiSocket}`, serialLog };
  }

  async cleanupJailedFirecracker(raw: OpArgs<"cleanupJailedFirecracker">): Promise<boolean> {
    const { vmId } = this.#args("cleanupJailedFirecracker", raw);
    const { jailer } = this.#jailConfig("clean up the jail of", vmId);
    const execFile = await Deno.realPath(jailer.firecrackerBin);
    const { jailDir, pidFile } = jailPaths(jailer.chrootBase, execFile, vmId);
    const pidText = await Deno.readTextFile(pidFile).catch(() => "");
    const pid = Number(pidText.trim());
    if (Number.isInteger(pid) && pid > 1 && processExists(pid)) {
      const cmdline = readProcFileIfExists(`/proc/${pid}/cmdline`) ?? "";
      if (cmdline.split("\0").some((a) => a === `--id=${vmId}` || a === vmId)) {
        throw new PrivilegedOpsError(
          `Cannot clean up the jail of VM "${vmId}": its Firecracker (pid ${pid}) still runs`,
          { code: "failed_precondition" },
        );
      }
    }
    try {
      await Deno.remove(jailDir, { recursive: true });
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
  }

  #jailConfig(what: string, vmId: string): {
    jailer: NonNullable<InProcessOpsOptions["jailer"]>;
    owner: FileOwner;
  } {
    const { jailer, owner } = this.#options;
    if (!jailer || !owner) {
      throw new PrivilegedOpsError(
        `Cannot ${what} VM "${vmId}": no jailer is configured for this helper`,
        { code: "failed_precondition", hint: "set jailer_bin in the system config.toml" },
      );
    }
    return { jailer, owner };
  }
}

/** The network of an interface address: `172.16.0.1/24` → `172.16.0.0/24`. */
function networkOf(address: string): string {
  const a = parseInterfaceAddress(address);
  if (!a) return address;
  const size = 2 ** (32 - a.prefixLength);
  const ip = parseIpv4(a.address) ?? 0;
  return `${formatIpv4(ip - (ip % size))}/${a.prefixLength}`;
}

/** Runs synchronous work so that a throw becomes a rejected promise. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Refuses a jail base on a `nodev` mount: the jail's `/dev/kvm`, `/dev/net/tun` and disk
 * nodes would exist but could not be opened.
 */
async function refuseNodev(chrootBase: string): Promise<void> {
  const mount = await hostMountOf(chrootBase);
  if (mount?.options.includes("nodev")) {
    throw new PrivilegedOpsError(
      `Cannot use the jailer's chroot base "${chrootBase}": its filesystem (${mount.source} on ` +
        `${mount.mountPoint}) is mounted nodev, so the jail's /dev/kvm could not be opened`,
      { code: "failed_precondition", hint: `remount ${mount.mountPoint} without nodev` },
    );
  }
}

/**
 * Refuses any device but the dm device this helper made for VM `vmId`'s root disk
 * (`bg-root-<vmId>`): mknod'ed into the jail and handed to the owner, any other `dm-N`
 * (on an LVM or LUKS host, `dm-0` is the host's own disk) would be raw access to it.
 */
function ownRootDiskDevice(device: string, vmId: string): void {
  const minor = /^\/dev\/(dm-\d+)$/.exec(device)?.[1];
  const expected = `bg-root-${vmId}`;
  const name = minor ? readProcFileIfExists(`/sys/class/block/${minor}/dm/name`)?.trim() : "";
  if (name !== expected) {
    throw new PrivilegedOpsError(
      `Cannot put "${device}" in the jail of VM "${vmId}": it is ${
        name ? `device-mapper device "${name}"` : "no device-mapper device"
      }, not the root disk banger made for that VM (${expected})`,
      { code: "permission_denied" },
    );
  }
}
