import process from "node:process";
import {
  jailPaths,
  makeDev,
  prepareJailChroot,
  renderJailerArgs,
} from "../../../../host/vmm/firecracker/jailer.ts";
import { JailerError } from "../../../../host/vmm/firecracker/jailer.ts";
import {
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../../../fixtures/assert.ts";
import { gatedTest, root } from "../../../fixtures/requires.ts";

const SPEC = {
  id: "vm-1",
  execFile: "/usr/bin/firecracker",
  uid: 1000,
  gid: 1001,
  chrootBaseDir: "/srv/jailer",
  firecrackerArgs: ["--api-sock", "/var/lib/banger/vms/vm-1/fc.sock"],
};

Deno.test("renderJailerArgs() renders the required flags, then Firecracker's after --", () => {
  assertEquals(renderJailerArgs(SPEC), [
    "--id",
    "vm-1",
    "--exec-file",
    "/usr/bin/firecracker",
    "--uid",
    "1000",
    "--gid",
    "1001",
    "--chroot-base-dir",
    "/srv/jailer",
    "--",
    "--api-sock",
    "/var/lib/banger/vms/vm-1/fc.sock",
  ]);
});

Deno.test("renderJailerArgs() adds --netns and --daemonize only when asked", () => {
  const argv = renderJailerArgs({ ...SPEC, netns: "/var/run/netns/x", daemonize: true });
  assertEquals(argv.slice(10, 14), ["--netns", "/var/run/netns/x", "--daemonize", "--"]);
});

Deno.test("renderJailerArgs() refuses injected text and bad values", async (t) => {
  const bad: [string, Partial<typeof SPEC> & { netns?: string }][] = [
    ["an id with a newline", { id: "vm\n--uid 0" }],
    ["an id with an underscore", { id: "vm_1" }],
    ["a 65-byte id", { id: "a".repeat(65) }],
    ["a relative exec file", { execFile: "firecracker" }],
    ["a newline in the base dir", { chrootBaseDir: "/srv/jail\ner" }],
    ["a negative uid", { uid: -1 }],
    ["a fractional gid", { gid: 1.5 }],
    ["a newline in a Firecracker argument", { firecrackerArgs: ["--api-sock", "/x\n"] }],
    ["a relative netns", { netns: "netns/x" }],
  ];
  for (const [name, patch] of bad) {
    await t.step(name, () => {
      assertThrows(() => renderJailerArgs({ ...SPEC, ...patch }), JailerError, "Cannot render");
    });
  }
});

Deno.test("jailPaths() follows the jailer's <base>/<exec name>/<id>/root layout and pid file", () => {
  assertEquals(jailPaths("/srv/jailer", "/opt/fc/firecracker-v1.16.1-x86_64", "vm-1"), {
    jailDir: "/srv/jailer/firecracker-v1.16.1-x86_64/vm-1",
    chrootDir: "/srv/jailer/firecracker-v1.16.1-x86_64/vm-1/root",
    serialLog: "/srv/jailer/firecracker-v1.16.1-x86_64/vm-1/serial.log",
    pidFile: "/srv/jailer/firecracker-v1.16.1-x86_64/vm-1/root/firecracker-v1.16.1-x86_64.pid",
  });
});

Deno.test("makeDev() matches glibc makedev for small and large numbers", () => {
  assertEquals(makeDev(253, 0), 0xfd00n);
  assertEquals(makeDev(7, 3), 0x703n);
  assertEquals(makeDev(259, 300), 0x11032cn);
  assertEquals(makeDev(4096, 1), 0x100000000001n);
});

gatedTest(
  "prepareJailChroot() hard-links files at their own paths, gives every directory its mode under umask 077, and hands the VM dir to the uid (root)",
  [root()],
  async () => {
    const base = await Deno.makeTempDir({ prefix: "bgj-" });
    const umask = process.umask(0o077);
    try {
      const vmDir = `${base}/state/vms/vm-1`;
      await Deno.mkdir(vmDir, { recursive: true });
      await Deno.writeTextFile(`${base}/state/vmlinux`, "kernel");
      await Deno.writeTextFile(`${vmDir}/root.ext4`, "root");
      for (const f of [`${base}/state/vmlinux`, `${vmDir}/root.ext4`]) {
        await Deno.chown(f, 65534, 65534);
      }
      await Deno.mkdir(`${base}/jail`, { mode: 0o711 });
      const chrootDir = `${base}/jail/firecracker/vm-1/root`;
      await prepareJailChroot({
        chrootBaseDir: `${base}/jail`,
        chrootDir,
        vmDir,
        files: [`${base}/state/vmlinux`, `${vmDir}/root.ext4`],
        uid: 65534,
        gid: 65534,
      });
      for (const f of [`${base}/state/vmlinux`, `${vmDir}/root.ext4`]) {
        const [a, b] = [await Deno.stat(f), await Deno.stat(`${chrootDir}${f}`)];
        assertEquals(b.ino, a.ino, `${f} is the same inode inside the jail`);
      }
      const inner = await Deno.stat(`${chrootDir}${vmDir}`);
      assertEquals([inner.uid, inner.gid, (inner.mode ?? 0) & 0o777], [65534, 65534, 0o700]);
      const parent = await Deno.stat(`${chrootDir}${base}/state`);
      assertEquals(parent.uid, 0, "directories above the VM dir stay root's");
      assertEquals((parent.mode ?? 0) & 0o777, 0o755, "traversable by Firecracker's uid");
      assertEquals(((await Deno.stat(chrootDir)).mode ?? 0) & 0o777, 0o755);
      for (const outer of [`${base}/jail/firecracker`, `${base}/jail/firecracker/vm-1`]) {
        assertEquals(
          ((await Deno.stat(outer)).mode ?? 0) & 0o777,
          0o711,
          `${outer} lets the owner through`,
        );
      }
      for (const name of ["vmm.log", "metrics.json"]) {
        const st = await Deno.stat(`${chrootDir}${vmDir}/${name}`);
        assertEquals(
          [st.size, st.uid, (st.mode ?? 0) & 0o777],
          [0, 65534, 0o600],
          `${name} exists for FC < 1.14`,
        );
      }
    } finally {
      process.umask(umask);
      await Deno.remove(base, { recursive: true });
    }
  },
);

gatedTest(
  "prepareJailChroot() links only the owner's regular files, never through a symlinked directory, and places nothing when refusing",
  [root()],
  async () => {
    const base = await Deno.makeTempDir({ prefix: "bgj-" });
    try {
      const vmDir = `${base}/state/vms/vm-1`;
      await Deno.mkdir(vmDir, { recursive: true });
      await Deno.mkdir(`${base}/jail`, { mode: 0o711 });
      await Deno.writeTextFile(`${base}/secret`, "root's");
      await Deno.writeTextFile(`${base}/mine`, "owner's");
      await Deno.chown(`${base}/mine`, 65534, 65534);
      await Deno.link(`${base}/secret`, `${vmDir}/rootlink`);
      await Deno.symlink(base, `${base}/state/swapped`);
      const cases: [string, RegExp][] = [
        [`${vmDir}/rootlink`, /owned by uid 0/],
        [`${base}/state/swapped/mine`, /Too many levels of symbolic links|ELOOP/],
      ];
      for (const [file, message] of cases) {
        const chrootDir = `${base}/jail/firecracker/vm-1/root`;
        const err = await assertRejects(() =>
          prepareJailChroot({
            chrootBaseDir: `${base}/jail`,
            chrootDir,
            vmDir,
            files: [file],
            uid: 65534,
            gid: 65534,
          })
        );
        assertMatch(String(err), message);
        assertEquals(await exists(`${chrootDir}${file}`), false, `${file} was not linked`);
        assertEquals((await Deno.stat(`${base}/secret`)).nlink, 2, "only the owner's own link");
        await Deno.remove(`${base}/jail/firecracker`, { recursive: true });
      }
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  },
);

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}
