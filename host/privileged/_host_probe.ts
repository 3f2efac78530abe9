/**
 * `PrivilegedOps.probeHost` for the in-process adapter (folder-private): device nodes,
 * `/proc/cpuinfo` and `/sys/module` through libc, because Deno's file APIs refuse `/dev`,
 * `/proc` and `/sys`. For the root helper, "can the VMM open `/dev/kvm`" is decided for
 * the owner from the node's mode, owner and group and the owner's groups in
 * `/etc/passwd` and `/etc/group` (the helper itself is root and could open anything);
 * in one process it is decided by opening it.
 *
 * @module
 */

import { cpuFlags, cpuKhz, type KvmFacts } from "../vmm/kvm.ts";
import { Fd, LibcError, O_PATH, O_RDWR, pathExists } from "../os/libc.ts";
import type { HostFacts } from "./privileged_ops.ts";
import { readProcFileIfExists } from "../os/procfs.ts";

/** The user whose access is judged, with every group it is in. */
export interface VmmUser {
  uid: number;
  gid: number;
  /** Supplementary groups (from `/etc/group`). */
  groups: number[];
}

/** Gathers {@linkcode HostFacts}; `user` unset: this process opens `/dev/kvm` itself. */
export function probeHostFacts(user?: VmmUser): HostFacts {
  const cpuinfo = readProcFileIfExists("/proc/cpuinfo") ?? "";
  const khz = cpuKhz(cpuinfo);
  const kvm: KvmFacts = {
    ...kvmAccess(user),
    cpuFlags: cpuFlags(cpuinfo),
    pvmModuleLoaded: pathExists("/sys/module/kvm_pvm"),
  };
  return {
    kvm,
    devices: {
      vhostVsock: pathExists("/dev/vhost-vsock"),
      netTun: pathExists("/dev/net/tun"),
      loopControl: pathExists("/dev/loop-control"),
      mapperControl: pathExists("/dev/mapper/control"),
    },
    ...(khz !== undefined ? { cpuKhz: khz } : {}),
  };
}

function kvmAccess(user?: VmmUser): Pick<KvmFacts, "present" | "accessible" | "openError"> {
  if (!pathExists("/dev/kvm")) return { present: false, accessible: false };
  try {
    if (!user) {
      Fd.open("/dev/kvm", O_RDWR, "open").close();
      return { present: true, accessible: true };
    }
    using fd = Fd.open("/dev/kvm", O_PATH, "inspect");
    const denied = readWriteDenial(fd.stat(), user, groupNames());
    return denied ? { present: true, accessible: false, openError: denied } : {
      present: true,
      accessible: true,
    };
  } catch (err) {
    if (!(err instanceof LibcError)) throw err;
    return { present: true, accessible: false, openError: err.message };
  }
}

/**
 * Why `user` may not open a node with this mode/owner/group read-write, or `undefined`
 * when it may (the kernel's owner → group → other rule; root may always). Pure.
 */
export function readWriteDenial(
  node: { mode: number; uid: number; gid: number },
  user: VmmUser,
  names: ReadonlyMap<number, string> = new Map(),
): string | undefined {
  if (user.uid === 0) return undefined;
  const inGroup = node.gid === user.gid || user.groups.includes(node.gid);
  const bits = node.uid === user.uid ? node.mode >> 6 : inGroup ? node.mode >> 3 : node.mode;
  if ((bits & 0o6) === 0o6) return undefined;
  const group = names.get(node.gid) ?? String(node.gid);
  const mode = (node.mode & 0o777).toString(8).padStart(4, "0");
  const who = inGroup ? `uid ${user.uid}` : `uid ${user.uid} is not in group ${group} and`;
  return `mode ${mode}, owner uid ${node.uid}, group ${group}: ${who} may not read and write it`;
}

/**
 * The user with `uid` and its groups, from `/etc/passwd` and `/etc/group` (local files
 * only: what systemd's `User=` gets through NSS on a stock host).
 */
export function vmmUser(uid: number, gid: number): VmmUser {
  return {
    uid,
    gid,
    groups: supplementaryGroups(uid, readText("/etc/passwd"), readText("/etc/group")),
  };
}

/** The gids whose member list names the login of `uid`, from passwd(5)/group(5) text. Pure. */
export function supplementaryGroups(uid: number, passwd: string, group: string): number[] {
  const fields = (text: string) => text.split("\n").map((l) => l.split(":"));
  const name = fields(passwd).find((f) => f.length >= 7 && Number(f[2]) === uid)?.[0];
  if (!name) return [];
  return fields(group)
    .filter((f) => f.length >= 4 && f[2] !== "" && (f[3] ?? "").trim().split(",").includes(name))
    .map((f) => Number(f[2]))
    .filter(Number.isInteger);
}

function groupNames(): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of readText("/etc/group").split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && f[2] !== "" && Number.isInteger(Number(f[2]))) out.set(Number(f[2]), f[0]);
  }
  return out;
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}
