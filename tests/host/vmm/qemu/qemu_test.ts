import { renderGuestEnv } from "../../../../catalog/guest/guest_env.ts";
import { renderKernelCmdline } from "../../../../host/vmm/kernel_cmdline.ts";
import { kernelManifestSchema } from "../../../../catalog/kernel/kernel_build.ts";
import { createExt4, writeExt4 } from "../../../../host/disk/ext4.ts";
import { cpuKhz } from "../../../../host/vmm/kvm.ts";
import { readProcFile } from "../../../../host/os/procfs.ts";
import {
  launchQemu,
  QemuError,
  QemuProcess,
  type QemuVmSpec,
  renderQemuArgv,
} from "../../../../host/vmm/qemu/qemu.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../../../fixtures/assert.ts";
import {
  guestArtifacts,
  guestArtifactsRequirements,
  guestKernel,
  guestKernelRequirements,
} from "../../../fixtures/guest_artifacts.ts";
import { Netns } from "../../../fixtures/netns.ts";
import { gatedTest, programs } from "../../../fixtures/requires.ts";

const SPEC: QemuVmSpec = {
  accel: "tcg",
  vcpus: 2,
  memoryMib: 1024,
  kernelPath: "/k/vmlinux",
  initrdPath: "/k/initrd.img",
  cmdline: "console=ttyS0 root=/dev/vda rw",
  rootDiskPath: "/vm/root.ext4",
  workDiskPath: "/vm/work.ext4",
  tap: { name: "tap-ab12", mac: "06:00:ac:10:00:02" },
  serialLogPath: "/vm/serial.log",
  monitorSocketPath: "/vm/qemu.sock",
  pidFilePath: "/vm/vmm.pid",
};

Deno.test("renderQemuArgv() renders a microvm with root, work disk, tap, serial log, QMP and pid file", () => {
  assertEquals(renderQemuArgv(SPEC), [
    ...["-M", "microvm", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024"],
    ...["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"],
    ...["-chardev", "file,id=serial0,path=/vm/serial.log,append=on", "-serial", "chardev:serial0"],
    ...["-qmp", "unix:/vm/qemu.sock,server=on,wait=off"],
    ...["-pidfile", "/vm/vmm.pid"],
    ...[
      "-kernel",
      "/k/vmlinux",
      "-initrd",
      "/k/initrd.img",
      "-append",
      "console=ttyS0 root=/dev/vda rw",
    ],
    ...["-drive", "id=root,file=/vm/root.ext4,format=raw,if=none,cache=writeback,discard=unmap"],
    ...["-device", "virtio-blk-device,drive=root"],
    ...["-drive", "id=work,file=/vm/work.ext4,format=raw,if=none,cache=writeback,discard=unmap"],
    ...["-device", "virtio-blk-device,drive=work"],
    ...["-netdev", "tap,id=net0,ifname=tap-ab12,script=no,downscript=no"],
    ...["-device", "virtio-net-device,netdev=net0,mac=06:00:ac:10:00:02"],
  ]);
});

Deno.test("renderQemuArgv() uses -cpu host under KVM and adds vhost-vsock only with a CID", () => {
  const argv = renderQemuArgv({
    ...SPEC,
    accel: "kvm",
    vsockCid: 7,
    workDiskPath: undefined,
    tap: undefined,
  });
  assertEquals(argv.slice(0, 6), ["-M", "microvm", "-accel", "kvm", "-cpu", "host"]);
  assertEquals(argv.slice(-2), ["-device", "vhost-vsock-device,guest-cid=7"]);
  assertEquals(argv.includes("-netdev") || argv.some((a) => a.includes("drive=work")), false);
});

Deno.test("renderQemuArgv() rejects values that would change QEMU's option syntax", async (t) => {
  const cases: [string, Partial<QemuVmSpec>, string][] = [
    ["comma in a disk path", { rootDiskPath: "/vm/a,format=qcow2" }, "without commas"],
    ["relative path", { kernelPath: "vmlinux" }, "must be absolute"],
    ["newline in the command line", { cmdline: "console=ttyS0\n-device x" }, "newline"],
    ["long socket path", { monitorSocketPath: `/${"s".repeat(120)}` }, "longer than 107 bytes"],
    [
      "tap name over 15 bytes",
      { tap: { name: "tap-0123456789ab", mac: "06:00:00:00:00:01" } },
      "tap name",
    ],
    ["bad MAC", { tap: { name: "tap0", mac: "06:00:00:00:00:0G" } }, "MAC"],
    ["reserved CID", { vsockCid: 2 }, "CID 2"],
    ["no CPUs", { vcpus: 0 }, "vcpus"],
  ];
  for (const [name, patch, why] of cases) {
    await t.step(name, () => {
      assertThrows(() => renderQemuArgv({ ...SPEC, ...patch }), QemuError, why);
    });
  }
});

gatedTest("launchQemu() reports QEMU's own error when a disk is missing (QEMU)", [
  programs("qemu-system-x86_64"),
], async () => {
  const dir = await Deno.makeTempDir({ prefix: "bgt-qemu-" });
  try {
    await Deno.writeFile(`${dir}/vmlinux`, new Uint8Array(0));
    await Deno.writeFile(`${dir}/initrd.img`, new Uint8Array(0));
    const err = await assertRejects(
      () =>
        launchQemu({
          ...SPEC,
          kernelPath: `${dir}/vmlinux`,
          initrdPath: `${dir}/initrd.img`,
          rootDiskPath: `${dir}/missing.ext4`,
          workDiskPath: undefined,
          tap: undefined,
          serialLogPath: `${dir}/serial.log`,
          monitorSocketPath: `${dir}/qemu.sock`,
          pidFilePath: `${dir}/qemu.pid`,
        }),
      QemuError,
      "Cannot start QEMU",
    );
    assertStringIncludes(err.message, `${dir}/missing.ext4`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Writes progress and timings to stderr (tests report numbers, never assert them). */
function note(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`    ${text}\n`));
}

function tscKhz(): number {
  const khz = cpuKhz(readProcFile("/proc/cpuinfo"));
  if (khz === undefined) throw new Error("Cannot read the host CPU frequency from /proc/cpuinfo");
  return khz;
}

gatedTest(
  "a guest whose root disk has no init stops QEMU instead of hanging (QEMU, initrd)",
  [...guestKernelRequirements(), programs("qemu-system-x86_64", "mkfs.ext4")],
  async () => {
    const { vmlinux, initrd } = await guestKernel();
    const dir = await Deno.makeTempDir({ prefix: "bgt-qemu-" });
    try {
      await createExt4({ path: `${dir}/empty.ext4`, sizeBytes: 16 * 1024 * 1024 });
      const started = performance.now();
      const vm = await launchQemu({
        accel: "tcg",
        vcpus: 1,
        memoryMib: 512,
        kernelPath: vmlinux,
        initrdPath: initrd,
        cmdline: renderKernelCmdline({ vmm: "qemu-microvm", tscKhz: tscKhz() }),
        rootDiskPath: `${dir}/empty.ext4`,
        serialLogPath: `${dir}/serial.log`,
        monitorSocketPath: `${dir}/qemu.sock`,
        pidFilePath: `${dir}/qemu.pid`,
      });
      try {
        await vm.waitForExit({ timeoutMs: 120_000 });
      } finally {
        await vm.stop();
      }
      note(`init missing -> QEMU exited in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      const serial = await Deno.readTextFile(`${dir}/serial.log`);
      assertStringIncludes(serial, "banger-initrd: init /sbin/init is missing from /dev/vda");
      assertStringIncludes(serial, "Kernel panic");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

interface Guest {
  ns: Netns;
  ip: string;
  key: string;
  dir: string;
}

function sshArgs(g: Guest, command: string): string[] {
  return [
    "ssh",
    ...["-i", g.key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
    ...["-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3"],
    `root@${g.ip}`,
    command,
  ];
}

async function ssh(g: Guest, command: string): Promise<string> {
  return (await g.ns.exec(sshArgs(g, command))).trim();
}

/** Polls until SSH answers; fails early (with the serial log) when QEMU exits. */
async function waitForSsh(g: Guest, vm: QemuProcess, timeoutMs = 180_000): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    if ((await g.ns.run(sshArgs(g, "true"))).code === 0) return performance.now() - started;
    if (!(await vm.isRunning())) {
      const serial = await Deno.readTextFile(`${g.dir}/serial.log`).catch(() => "");
      throw new Error(`QEMU exited before SSH came up:\n${serial.slice(-3000)}`);
    }
    // Nothing signals "sshd is listening" to the host; poll at a modest pace.
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`SSH did not come up within ${timeoutMs} ms`);
}

/** Root disk (sparse copy of the golden image), SSH key, and a work disk with guest.env. */
async function prepareDisks(g: Guest, rootfs: string, subnet: number): Promise<void> {
  const { dir } = g;
  const copy = await new Deno.Command("cp", {
    args: ["--sparse=always", rootfs, `${dir}/root.ext4`],
  }).output();
  assert(copy.success, "sparse copy of rootfs.ext4");
  await new Deno.Command("ssh-keygen", { args: ["-q", "-t", "ed25519", "-N", "", "-f", g.key] })
    .output();
  await createExt4({ path: `${dir}/work.ext4`, sizeBytes: 512 * 1024 * 1024 });
  await writeExt4(`${dir}/work.ext4`, [
    { kind: "mkdir", path: "/.banger", mode: 0o755 },
    {
      kind: "writeFile",
      path: "/.banger/guest.env",
      mode: 0o644,
      text: renderGuestEnv({
        vmId: "qemu-test",
        vmName: "qemu-test",
        hostname: "qemu-test",
        guestIp: `${g.ip}/30`,
        gateway: `172.30.${subnet}.1`,
        dns: [`172.30.${subnet}.1`],
      }),
    },
    { kind: "mkdir", path: "/.ssh", mode: 0o700 },
    {
      kind: "writeFile",
      path: "/.ssh/authorized_keys",
      mode: 0o600,
      text: await Deno.readTextFile(`${g.key}.pub`),
    },
  ]);
}

gatedTest(
  "launchQemu() boots the golden image: SSH, hostname, agent ports, and /root survives reboot (root, QEMU)",
  [
    ...guestArtifactsRequirements(),
    programs("qemu-system-x86_64", "ssh", "ssh-keygen", "ip", "debugfs"),
  ],
  async () => {
    const artifacts = await guestArtifacts();
    const kernel = kernelManifestSchema.parse(
      JSON.parse(await Deno.readTextFile(`${artifacts.kernelDir}/manifest.json`)),
    );
    await using stack = new AsyncDisposableStack();
    const dir = await Deno.makeTempDir({ prefix: "bgt-qemu-boot-" });
    stack.defer(() => Deno.remove(dir, { recursive: true }));
    const ns = await Netns.create();
    stack.use(ns);
    const subnet = 1 + Math.floor(Math.random() * 250);
    const tap = `tap-${crypto.randomUUID().slice(0, 6)}`;
    const g: Guest = { ns, ip: `172.30.${subnet}.2`, key: `${dir}/id_ed25519`, dir };
    await ns.exec(["ip", "tuntap", "add", tap, "mode", "tap"]);
    await ns.exec(["ip", "addr", "add", `172.30.${subnet}.1/30`, "dev", tap]);
    await ns.exec(["ip", "link", "set", tap, "up"]);

    let t = performance.now();
    await prepareDisks(g, artifacts.rootfs, subnet);
    note(`disks ready in ${((performance.now() - t) / 1000).toFixed(2)} s`);

    const spec: QemuVmSpec = {
      accel: "tcg",
      vcpus: 2,
      memoryMib: 1024,
      kernelPath: artifacts.vmlinux,
      initrdPath: artifacts.initrd,
      cmdline: renderKernelCmdline({ vmm: "qemu-microvm", tscKhz: tscKhz() }),
      rootDiskPath: `${dir}/root.ext4`,
      workDiskPath: `${dir}/work.ext4`,
      tap: { name: tap, mac: "06:00:ac:1e:00:02" },
      serialLogPath: `${dir}/serial.log`,
      monitorSocketPath: `${dir}/qemu.sock`,
      pidFilePath: `${dir}/qemu.pid`,
    };

    const first = await launchQemu(spec, { netns: ns.name });
    stack.use(first);
    note(`first boot: QEMU start -> SSH ${((await waitForSsh(g, first)) / 1000).toFixed(1)} s`);
    assertEquals(await ssh(g, "uname -r"), kernel.version);
    assertEquals(await ssh(g, "hostname"), "qemu-test");
    assertEquals(await ssh(g, "findmnt -n -o SOURCE /root"), "/dev/vdb");
    const ports = JSON.parse(await ssh(g, "/usr/local/libexec/banger-agent ports")) as {
      ports: { proto: string; port: number; processes: { name: string }[] }[];
    };
    assert(
      ports.ports.some((p) =>
        p.proto === "tcp" && p.port === 22 && p.processes.some((q) => q.name === "sshd")
      ),
      `sshd listens on 22: ${JSON.stringify(ports)}`,
    );
    assertEquals(JSON.parse(await ssh(g, "/usr/local/libexec/banger-agent health")).ok, true);
    note(`guest: ${await ssh(g, "systemd-analyze | head -1")}`);
    const hostKey = await ssh(g, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub");
    assertEquals(await ssh(g, "systemctl --failed --no-legend --plain | wc -l"), "0");

    const marker = crypto.randomUUID();
    await ns.run(sshArgs(g, `echo ${marker} > /root/marker && sync && reboot`));
    t = performance.now();
    await first.waitForExit({ timeoutMs: 60_000 });
    note(`reboot -> QEMU exit ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const second = await launchQemu(spec, { netns: ns.name });
    stack.use(second);
    note(`second boot: QEMU start -> SSH ${((await waitForSsh(g, second)) / 1000).toFixed(1)} s`);
    assertEquals(await ssh(g, "cat /root/marker"), marker);
    assertEquals(
      await ssh(g, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"),
      hostKey,
      "the VM keeps its own host key across reboots",
    );
    t = performance.now();
    await second.stop();
    note(`QMP quit -> QEMU gone ${((performance.now() - t) / 1000).toFixed(1)} s`);
    assertEquals(await second.isRunning(), false);
  },
);
