/**
 * The privilege split end to end, with real processes: a system install in a temp root
 * (owner `nobody`), the root helper (`banger helper`, root, `helper` task permissions)
 * and the owner daemon (`banger daemon` as uid 65534, `owner` task permissions, no
 * capabilities) inside a fresh network namespace; the CLI as the owner runs real QEMU
 * guests (the cached Debian artifacts) through them.
 *
 * The owner daemon runs in a private mount namespace where `/dev/net/tun` is a 0666 node,
 * as on a stock Debian host (this machine's is 0600, which no unprivileged VMM can open).
 */
import { storePath } from "../../host/layout.ts";
import { readProcFile } from "../../host/os/procfs.ts";
import { Store } from "../../store/db.ts";
import { assert, assertEquals, assertStringIncludes } from "../fixtures/assert.ts";
import { deleteVmsAndStop, taskFlags, waitForPath } from "../fixtures/banger_cli.ts";
import { guestArtifacts, guestArtifactsRequirements } from "../fixtures/guest_artifacts.ts";
import { Netns } from "../fixtures/netns.ts";
import { recordGuest } from "../fixtures/seed_image.ts";
import { gatedTest, programs, type Requirement, root } from "../fixtures/requires.ts";
import {
  asOwner,
  openTunNode,
  OWNER,
  ownerDenoDir,
  type SystemRoot,
  systemRoot,
} from "../fixtures/system_root.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** The owner daemon must get its `PrivilegedOps` from `selectPrivilegedOps`. */
function servicesWired(): Requirement {
  const text = Deno.readTextFileSync(`${ROOT}daemon/services.ts`);
  return text.includes("selectPrivilegedOps(")
    ? {}
    : { missing: "daemon/services.ts does not call selectPrivilegedOps yet" };
}

/** Registers the cached real kernel and image in the install's store, owned by the owner. */
async function seedRealGuest(sys: SystemRoot): Promise<void> {
  const art = await guestArtifacts();
  const state = sys.layout.stateDir;
  const kdir = `${state}/kernels/debian-kernel`;
  const idir = `${state}/images/debian`;
  await Deno.mkdir(kdir, { recursive: true });
  await Deno.mkdir(idir, { recursive: true });
  const cp = (from: string, to: string) =>
    new Deno.Command("cp", { args: ["--sparse=always", from, to] }).output();
  await cp(art.vmlinux, `${kdir}/vmlinux`);
  await cp(art.initrd, `${kdir}/initrd.img`);
  await cp(art.rootfs, `${idir}/rootfs.ext4`);
  {
    using store = Store.open(storePath(sys.layout));
    recordGuest(store, {
      id: "00000000000000bb",
      image: "debian",
      kernel: "debian-kernel",
      kernelDir: kdir,
      imageDir: idir,
      sizeBytes: (await Deno.stat(`${idir}/rootfs.ext4`)).size,
    });
  }
  const chown = ["-R", `${OWNER.uid}:${OWNER.gid}`, state];
  await new Deno.Command("chown", { args: chown }).output();
}

interface Split extends AsyncDisposable {
  sys: SystemRoot;
  ns: Netns;
  /** Runs `banger <args>` as the owner inside the namespace. */
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  startHelper(): Promise<void>;
  stopHelper(): Promise<void>;
  daemonPid(): number;
}

const FAKE_FC = `${ROOT}tests/fixtures/fake_firecracker.ts`;
const FAKE_JAILER = `${ROOT}tests/fixtures/fake_jailer.sh`;

/**
 * A system install with the helper and owner daemon running in a fresh namespace. With
 * `jailed`, guests boot with the fake firecracker (QEMU mode) under the chrooting fake
 * jailer, which the helper runs as the systemd unit would: `UMask=0077`.
 */
async function split(o: { jailed?: boolean } = {}): Promise<Split> {
  const sys = await systemRoot();
  const ns = await Netns.create();
  const denoDir = await ownerDenoDir();
  const tun = await openTunNode();
  const dnsPort = 20000 + Math.floor(Math.random() * 20000);
  // Installed the common way: symlinks on PATH named firecracker and jailer.
  const bin = `${sys.root}/usr/local/bin`;
  await Deno.mkdir(bin, { recursive: true });
  await Deno.symlink(FAKE_FC, `${bin}/firecracker`);
  await Deno.symlink(FAKE_JAILER, `${bin}/jailer`);
  const vmm = o.jailed
    ? ['vmm = "firecracker"', 'firecracker_bin = "firecracker"', 'jailer_bin = "jailer"']
    : ['vmm = "qemu"'];
  await Deno.writeTextFile(
    sys.layout.configFile,
    [
      ...vmm,
      `bridge_name = "bg-s${crypto.randomUUID().slice(0, 6)}"`,
      `dns_listen = "127.0.0.1:${dnsPort}"`,
      'default_image_name = "debian"',
      "tap_pool_size = 1",
      "[vm_defaults]",
      "vcpu = 2",
      "memory_mib = 768",
      'disk_size = "256M"',
      'system_overlay_size = "1G"',
      "",
    ].join("\n"),
  );
  await seedRealGuest(sys);
  const fakeEnv: Record<string, string> = o.jailed
    ? {
      FAKE_FC_MODE: "qemu",
      FAKE_JAILER_DENO_DIR: denoDir.path,
      PATH: `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
    }
    : {};
  const env = {
    BANGER_ROOT: sys.root,
    DENO_DIR: denoDir.path,
    HOME: "/nonexistent",
    ...fakeEnv,
  };
  const main = `${ROOT}main.ts`;
  let helper: Deno.ChildProcess | undefined;
  const startHelper = async () => {
    helper = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns.name,
        "sh",
        "-c",
        'umask 077 && exec "$@"', // the unit's UMask=0077
        "banger-helper",
        Deno.execPath(),
        "run",
        ...taskFlags("helper"),
        main,
        "helper",
      ],
      env: { BANGER_ROOT: sys.root, ...fakeEnv },
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    await waitForPath(`${sys.root}/run/banger-root/helper.sock`);
  };
  const stopHelper = async () => {
    helper?.kill("SIGTERM");
    await helper?.status;
    helper = undefined;
  };
  await startHelper();
  const daemonArgv = asOwner([Deno.execPath(), "run", ...taskFlags("owner"), main, "daemon"], env);
  const daemon = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns.name,
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount --bind "$0" /dev/net/tun && exec "$@"',
      tun.path,
      ...daemonArgv,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  await waitForPath(`${sys.layout.runtimeDir}/daemon.sock`);
  const cli = (args: string[]) =>
    ns.run(asOwner([Deno.execPath(), "run", ...taskFlags("owner"), main, ...args], env));
  return {
    sys,
    ns,
    cli,
    startHelper,
    stopHelper,
    daemonPid: () => Number(Deno.readTextFileSync(`${sys.layout.runtimeDir}/daemon.pid`).trim()),
    async [Symbol.asyncDispose]() {
      try {
        await deleteVmsAndStop(cli);
      } finally {
        try {
          daemon.kill("SIGKILL");
        } catch {
          // `daemon stop` already ended it
        }
        await daemon.status.catch(() => {});
        await stopHelper();
        await ns[Symbol.asyncDispose]();
        await tun[Symbol.asyncDispose]();
        await denoDir[Symbol.asyncDispose]();
        await sys[Symbol.asyncDispose]();
      }
    },
  };
}

gatedTest(
  "the owner daemon runs as an unprivileged uid with no capabilities and boots a real guest through the root helper; a helper restart keeps it running (root, netns, QEMU)",
  [
    root(),
    programs("qemu-system-x86_64", "setpriv", "unshare", "ip", "mknod"),
    ...guestArtifactsRequirements(),
    servicesWired(),
  ],
  async (t) => {
    await using s = await split();
    await t.step("the owner daemon has no capabilities", () => {
      const status = readProcFile(`/proc/${s.daemonPid()}/status`);
      assertEquals(/^Uid:\s+(\d+)/m.exec(status)?.[1], String(OWNER.uid));
      for (const cap of ["CapEff", "CapPrm"]) {
        assertEquals(
          new RegExp(`^${cap}:\\s+(\\w+)`, "m").exec(status)?.[1],
          "0000000000000000",
          cap,
        );
      }
    });
    await t.step("doctor reports the helper", async () => {
      const r = await s.cli(["doctor", "--json"]);
      assertStringIncludes(r.stdout, "root helper");
    });
    await t.step("vm run --rm -- true works through the split", async () => {
      const r = await s.cli(["vm", "run", "--rm", "--", "true"]);
      assertEquals(r.code, 0, r.stderr);
    });
    await t.step("a helper restart leaves a running VM running and reachable", async () => {
      const up = await s.cli(["vm", "run", "-d", "--name", "keep"]);
      assertEquals(up.code, 0, up.stderr);
      const before = JSON.parse((await s.cli(["vm", "show", "keep", "--json"])).stdout);
      await s.stopHelper();
      await s.startHelper();
      const after = JSON.parse((await s.cli(["vm", "show", "keep", "--json"])).stdout);
      assertEquals(after.status, "running");
      assert(typeof before.pid === "number" && after.pid === before.pid, "the same VMM process");
      const ssh = await s.cli(["vm", "ssh", "keep", "--", "echo", "still-here"]);
      assertEquals([ssh.code, ssh.stdout.trim()], [0, "still-here"], ssh.stderr);
      const del = await s.cli(["vm", "delete", "-f", "keep"]);
      assertEquals(del.code, 0, del.stderr);
    });
  },
);

gatedTest(
  "jailed: the root helper (UMask=0077) boots a real guest under the chrooting jailer stand-in with a symlinked firecracker; stop keeps the logs (root, netns, QEMU)",
  [
    root(),
    programs("qemu-system-x86_64", "setpriv", "unshare", "ip", "mknod", "chroot"),
    ...guestArtifactsRequirements(),
    servicesWired(),
  ],
  async (t) => {
    await using s = await split({ jailed: true });
    await t.step("vm create boots inside the jail as the owner", async () => {
      const r = await s.cli(["vm", "create", "--name", "jailed"]);
      assertEquals(r.code, 0, r.stderr);
      const vm = JSON.parse((await s.cli(["vm", "show", "jailed", "--json"])).stdout);
      assertEquals(vm.vmm, "firecracker");
      const status = readProcFile(`/proc/${vm.pid}/status`);
      assertEquals(/^Uid:\s+(\d+)/m.exec(status)?.[1], String(OWNER.uid));
      const root = await Deno.readLink(`/proc/${vm.pid}/root`);
      assertStringIncludes(root, `${s.sys.root}/var/lib/banger-jailer/fake_firecracker.ts/`);
      const ssh = await s.cli(["vm", "ssh", "jailed", "--", "echo", "inside"]);
      assertEquals([ssh.code, ssh.stdout.trim()], [0, "inside"], ssh.stderr);
    });
    await t.step("vm stop ends it and vm logs still shows the boot", async () => {
      const stop = await s.cli(["vm", "stop", "jailed"]);
      assertEquals(stop.code, 0, stop.stderr);
      const logs = await s.cli(["vm", "logs", "jailed"]);
      assertEquals(logs.code, 0, logs.stderr);
      assertStringIncludes(logs.stdout, "reboot: Restarting system", "the console up to the stop");
    });
  },
);
