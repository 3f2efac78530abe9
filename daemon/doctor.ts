/**
 * `banger doctor`: PASS/WARN/FAIL rows, each with a one-line fix. Runs in the CLI process
 * (it must work when the daemon cannot start) and never writes: the store is opened
 * read-only and missing directories are reported, not created. `/dev`, `/proc` and `/sys`
 * are probed through `PrivilegedOps` (`probeHost`, `rootDiskStrategy`): in-process for a
 * development setup, through the root helper for a system install, so the CLI needs no
 * `--allow-ffi` there.
 *
 * @module
 */

import { errorMessage } from "../host/errors.ts";
import { run, runText, whichProgram } from "../host/os/exec.ts";
import { classifyKvm, type KvmStatus } from "../host/vmm/kvm.ts";
import {
  FIRECRACKER_MIN,
  FIRECRACKER_TESTED,
  FIRECRACKER_UPGRADE_HINT,
  type FirecrackerProbe,
  firecrackerProblem,
  probeFirecracker,
} from "../host/vmm/firecracker/version.ts";
import { compareVersions } from "../host/version.ts";
import { checkPrivateDir, daemonSocket, type Layout, storePath, vmsDir } from "../host/layout.ts";
import type { HostFacts, PrivilegedOps } from "../host/privileged/privileged_ops.ts";
import {
  type PrivilegesChoice,
  selectPrivilegedOps,
} from "../host/privileged/select_privileged_ops.ts";
import { inspectSchema } from "../store/db.ts";
import type { DoctorCheck, DoctorReport } from "./api/daemon.ts";
import { type Config, loadConfig } from "./config.ts";
import { chooseVmm } from "./vmm/choice.ts";

const pass = (name: string, detail: string): DoctorCheck => ({ name, status: "PASS", detail });
const warn = (name: string, detail: string, fix: string): DoctorCheck => ({
  name,
  status: "WARN",
  detail,
  fix,
});
const fail = (name: string, detail: string, fix: string): DoctorCheck => ({
  name,
  status: "FAIL",
  detail,
  fix,
});

/** Host tools banger runs, with why and the Debian package that provides them. */
const TOOLS: { program: string; pkg: string; why: string; required: boolean }[] = [
  { program: "ip", pkg: "iproute2", why: "bridge and tap setup", required: true },
  { program: "nft", pkg: "nftables", why: "NAT for --nat", required: false },
  { program: "debugfs", pkg: "e2fsprogs", why: "writing work disks", required: true },
  { program: "e2fsck", pkg: "e2fsprogs", why: "checking disks", required: true },
  { program: "resize2fs", pkg: "e2fsprogs", why: "growing disks", required: true },
  { program: "ssh", pkg: "openssh-client", why: "reaching guests", required: true },
  { program: "ssh-keygen", pkg: "openssh-client", why: "the managed key", required: true },
  { program: "git", pkg: "git", why: "workspaces", required: false },
];

/**
 * Runs every check.
 *
 * @example
 * ```ts
 * const report = await runDoctor(layout, { home: "/home/me" });
 * ```
 */
export async function runDoctor(layout: Layout, options: { home: string }): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  let config: Config | undefined;
  try {
    config = await loadConfig(layout.configFile, options.home);
    checks.push(pass("config", layout.configFile));
  } catch (err) {
    checks.push(fail("config", errorMessage(err), `edit ${layout.configFile}`));
  }
  checks.push(checkArch());
  const choice = await selectPrivilegedOps(layout);
  const host = await choice.ops.probeHost({}).catch((err) => errorMessage(err));
  const kvm = typeof host === "string"
    ? { present: false, accessible: false, usable: false, reason: `cannot probe: ${host}` }
    : classifyKvm(host.kvm);
  checks.push(kvmCheck(kvm));
  if (config) {
    const firecracker = await probeFirecracker(config.firecrackerBin);
    checks.push(await checkFirecracker(config, firecracker));
    const decision = chooseVmm(config.vmm, { kvm, firecracker });
    checks.push(pass("vmm", decision.reason));
    if (decision.vmm === "qemu") {
      checks.push(await checkProgram(config.qemuBin, "qemu-system-x86", "booting guests", true));
    }
  }
  checks.push(...checkDevices(host));
  checks.push(await checkRootDisk(layout, choice.ops, host));
  if (config) checks.push(await checkDnsPort(config, layout));
  checks.push(await checkMkfs());
  for (const t of TOOLS) checks.push(await checkProgram(t.program, t.pkg, t.why, t.required));
  checks.push(checkStore(layout));
  checks.push(...await checkDirs(layout));
  checks.push(await checkPrivileges(layout, choice));
  return { checks };
}

function kvmCheck(kvm: KvmStatus): DoctorCheck {
  if (kvm.usable) return pass("kvm", "/dev/kvm can run standard guests");
  return warn(
    "kvm",
    kvm.reason ?? "not usable",
    kvm.present && !kvm.accessible
      ? "add yourself to the kvm group (sudo adduser $USER kvm) and log in again"
      : "guests run under QEMU software emulation (slow); use a host with hardware KVM",
  );
}

/** The "privileges" row: which `PrivilegedOps` the daemon uses, and whether it answers. */
async function checkPrivileges(layout: Layout, choice: PrivilegesChoice): Promise<DoctorCheck> {
  if (layout.mode !== "system") {
    return Deno.uid() === 0
      ? pass("privileges", "running as root: host operations run in-process (no system install)")
      : warn(
        "privileges",
        "not root and no root helper installed",
        "run banger as root, or install the helper: sudo banger system install --owner $USER",
      );
  }
  try {
    return pass("privileges", `${choice.detail} (${await choice.probe()})`);
  } catch (err) {
    return fail(
      "privileges",
      `system install, but the root helper does not answer: ${errorMessage(err)}`,
      "sudo systemctl restart banger-helper (see: journalctl -u banger-helper)",
    );
  }
}

function checkArch(): DoctorCheck {
  return Deno.build.arch === "x86_64"
    ? pass("architecture", "x86_64")
    : fail("architecture", `${Deno.build.arch} is not supported`, "use an x86_64 host");
}

/**
 * The "firecracker" row: the binary, its version against the supported range, and the
 * jailer, which must be the same release (reference/firecracker-and-host.md).
 */
async function checkFirecracker(config: Config, probe: FirecrackerProbe): Promise<DoctorCheck> {
  const needed = config.vmm === "firecracker";
  const problem = firecrackerProblem(probe);
  if (problem || !probe.found) {
    const detail = `${problem}${needed ? "" : "; QEMU is used instead"}`;
    return needed
      ? fail("firecracker", detail, FIRECRACKER_UPGRADE_HINT)
      : warn("firecracker", detail, FIRECRACKER_UPGRADE_HINT);
  }
  const { path, version } = probe;
  if (config.jailerBin) {
    const jailer = await whichProgram(config.jailerBin);
    if (!jailer) {
      return fail(
        "firecracker",
        `${path} v${version}, but jailer "${config.jailerBin}" not found`,
        "install the jailer of the same release, or unset jailer_bin",
      );
    }
    const jailerVersion = await runText(jailer, ["--version"], { timeoutMs: 5000 })
      .then((out) => /v(\d+\.\d+\.\d+)/.exec(out)?.[1], () => undefined);
    if (jailerVersion !== version) {
      return fail(
        "firecracker",
        `${path} is v${version} but jailer ${jailer} is ${
          jailerVersion ? `v${jailerVersion}` : "of unknown version"
        }: the jailer must come from the same release`,
        "install firecracker and jailer from one release tarball",
      );
    }
  }
  const jailed = config.jailerBin ? ` (jailer v${version})` : "";
  if (compareVersions(version, FIRECRACKER_TESTED) > 0) {
    return warn(
      "firecracker",
      `${path} v${version}${jailed}, newer than tested v${FIRECRACKER_TESTED}`,
      "report problems; downgrade if guests fail",
    );
  }
  return pass("firecracker", `${path} v${version}${jailed} (supported: v${FIRECRACKER_MIN}+)`);
}

async function checkRootDisk(
  layout: Layout,
  ops: PrivilegedOps,
  host: HostFacts | string,
): Promise<DoctorCheck> {
  const fix = "load device-mapper (sudo modprobe dm_snapshot) for instant copy-on-write root disks";
  const dir = vmsDir(layout);
  if (!(await Deno.stat(dir).then((i) => i.isDirectory, () => false))) {
    // Nothing to probe reflinks in yet (the probe never creates banger's directories).
    if (typeof host === "string") return warn("root disks", `cannot probe: ${host}`, fix);
    return host.devices.mapperControl
      ? pass("root disks", "dm snapshots over loop devices (/dev/mapper/control exists)")
      : warn(
        "root disks",
        `copies: no /dev/mapper/control (reflinks probed once ${dir} exists)`,
        fix,
      );
  }
  try {
    const { strategy, reason } = await ops.rootDiskStrategy({ dir });
    if (strategy === "dm-snapshot") {
      return pass("root disks", `dm snapshots over loop devices (${reason})`);
    }
    const what = strategy === "reflink"
      ? "reflink copies"
      : "sparse copies (the slowest: a full copy per VM)";
    return warn("root disks", `${what}: ${reason}`, fix);
  } catch (err) {
    return warn(
      "root disks",
      errorMessage(err),
      "run banger as root so it can probe device-mapper",
    );
  }
}

async function checkDnsPort(config: Config, layout: Layout): Promise<DoctorCheck> {
  const { host, port } = config.dnsListen;
  const name = "dns";
  try {
    const { createSocket } = await import("node:dgram");
    const sock = createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(port, host, () => resolve());
    });
    sock.close();
    return pass(name, `${host}:${port} is free for the .vm DNS server`);
  } catch {
    const daemonUp = await Deno.connect({ transport: "unix", path: daemonSocket(layout) })
      .then((c) => (c.close(), true), () => false);
    if (daemonUp) return pass(name, `${host}:${port} (the running banger daemon serves .vm)`);
    return warn(
      name,
      `${host}:${port} is in use by something other than banger`,
      `if no banger daemon runs, set dns_listen in ${"config.toml"} to a free address`,
    );
  }
}

function checkDevices(host: HostFacts | string): DoctorCheck[] {
  if (typeof host === "string") {
    const fix = "see the privileges row below";
    return ["tun", "loop", "vhost-vsock"].map((n) => warn(n, `cannot probe: ${host}`, fix));
  }
  const d = host.devices;
  return [
    d.netTun
      ? pass("tun", "/dev/net/tun")
      : fail("tun", "/dev/net/tun missing", "load the tun module: sudo modprobe tun"),
    d.loopControl
      ? pass("loop", "/dev/loop-control")
      : warn("loop", "/dev/loop-control missing (needed with device-mapper)", "sudo modprobe loop"),
    d.vhostVsock ? pass("vhost-vsock", "/dev/vhost-vsock") : warn(
      "vhost-vsock",
      "/dev/vhost-vsock missing: under QEMU the guest agent is reached over SSH instead of vsock",
      "sudo modprobe vhost_vsock",
    ),
  ];
}

async function checkProgram(
  program: string,
  pkg: string,
  why: string,
  required: boolean,
): Promise<DoctorCheck> {
  const path = await whichProgram(program);
  if (path) return pass(program, path);
  const fix = `sudo apt-get install ${pkg}`;
  return required
    ? fail(program, `not found (needed for ${why})`, fix)
    : warn(program, `not found (needed for ${why})`, fix);
}

async function checkMkfs(): Promise<DoctorCheck> {
  const path = await whichProgram("mkfs.ext4");
  if (!path) return fail("mkfs.ext4", "not found", "sudo apt-get install e2fsprogs");
  try {
    const { stderr } = await run(path, ["-V"], { timeoutMs: 5000 });
    const version = /mke2fs (\d+\.\d+(?:\.\d+)?)/.exec(stderr)?.[1];
    if (version && compareVersions(version, "1.43") < 0) {
      return fail(
        "mkfs.ext4",
        `e2fsprogs ${version} has no "mkfs.ext4 -d"`,
        "upgrade e2fsprogs to 1.43 or newer",
      );
    }
    return pass("mkfs.ext4", `${path} (e2fsprogs ${version ?? "unknown"})`);
  } catch (err) {
    return fail("mkfs.ext4", errorMessage(err), "reinstall e2fsprogs");
  }
}

function checkStore(layout: Layout): DoctorCheck {
  const path = storePath(layout);
  try {
    const state = inspectSchema(path);
    switch (state.kind) {
      case "missing":
        return pass("store", `${path} will be created`);
      case "current":
        return pass("store", `${path} at schema ${state.version}`);
      case "behind":
        return pass(
          "store",
          `${path} at schema ${state.version}; the daemon migrates it to ${state.latest}`,
        );
      case "newer":
        return fail(
          "store",
          `${path} has schema ${state.version}, newer than this banger (${state.latest})`,
          "upgrade banger",
        );
    }
  } catch (err) {
    return fail("store", errorMessage(err), `move ${path} aside and restart the daemon`);
  }
}

async function checkDirs(layout: Layout): Promise<DoctorCheck[]> {
  const uid = Deno.uid() ?? 0;
  const out: DoctorCheck[] = [];
  const dirs: [string, string][] = [
    ["state dir", layout.stateDir],
    ["cache dir", layout.cacheDir],
    ["runtime dir", layout.runtimeDir],
  ];
  // A system install's config dir is root's (/etc/banger, 0755): the owner only reads it.
  if (layout.mode !== "system") dirs.unshift(["config dir", layout.configDir]);
  for (const [name, dir] of dirs) {
    try {
      checkPrivateDir(dir, await Deno.lstat(dir), uid);
      out.push(pass(name, `${dir} (0700, yours)`));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) out.push(pass(name, `${dir} will be created`));
      else out.push(fail(name, errorMessage(err), `chmod 700 ${dir} && chown ${uid} ${dir}`));
    }
  }
  return out;
}
