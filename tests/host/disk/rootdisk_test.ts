import { assert, assertEquals, assertRejects } from "../../fixtures/assert.ts";
import {
  deviceMapper,
  gatedTest,
  programs,
  type Requirement,
  root,
} from "../../fixtures/requires.ts";
import { checkExt4, createExt4, readExt4File, writeExt4 } from "../../../host/disk/ext4.ts";
import { detachLoop, listLoops } from "../../../host/disk/loop.ts";
import { dmList } from "../../../host/disk/dm.ts";
import {
  createRootDisk,
  releaseRootDisk,
  RootDiskError,
  type RootDiskHandle,
  rootDiskHandleSchema,
  rootDiskStrategy,
} from "../../../host/disk/rootdisk.ts";

const PREFIX = "bgt-rootdisk-";
const tmpDir = Deno.env.get("TMPDIR") || "/tmp";
const E2FS = programs("mkfs.ext4", "debugfs", "e2fsck");

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A 64 MiB sparse ext4 base image holding a 4 MiB random file and /etc/hostname. */
async function makeBase(dir: string): Promise<string> {
  const base = `${dir}/rootfs.ext4`;
  await createExt4({ path: base, sizeBytes: 64 * 1024 * 1024 });
  const random = new Uint8Array(4 * 1024 * 1024);
  for (let i = 0; i < random.length; i += 65536) {
    crypto.getRandomValues(random.subarray(i, i + 65536));
  }
  await Deno.writeFile(`${dir}/blob`, random);
  await writeExt4(base, [
    { kind: "writeFile", path: "/etc/hostname", text: "base\n" },
    { kind: "writeFile", path: "/blob", hostFile: `${dir}/blob` },
  ]);
  return base;
}

async function withDirs(fn: (dir: string, base: string) => Promise<void>, at?: string) {
  const dir = await Deno.makeTempDir({ prefix: PREFIX, dir: at });
  try {
    await fn(dir, await makeBase(dir));
  } finally {
    for (const l of listLoops()) if (l.backingFile.startsWith(dir)) detachLoop(l.path);
    await Deno.remove(dir, { recursive: true });
  }
}

/** The view the guest writes to: its hostname, through the per-VM file. */
async function guestWrites(handle: RootDiskHandle): Promise<void> {
  await writeExt4(handle.vmFile, [{ kind: "writeFile", path: "/etc/hostname", text: "vm\n" }]);
}

/** Releases from the JSON the daemon would have persisted. */
async function releaseFromJson(handle: RootDiskHandle, deleteFiles: boolean) {
  const persisted = JSON.parse(JSON.stringify(handle));
  await releaseRootDisk(rootDiskHandleSchema.parse(persisted), { deleteFiles });
}

gatedTest(
  "createRootDisk() sparse copy: guest writes stay out of the base, and a larger root size grows it sparsely (root)",
  [root(), E2FS],
  async () => {
    await withDirs(async (dir, base) => {
      const before = await sha256(base);
      const vmDir = `${dir}/vms/a1`;
      const handle = await createRootDisk({
        id: "a1",
        baseImage: base,
        vmDir,
        cowBytes: 64 * 1024 * 1024,
        strategy: "sparse-copy",
      });
      assertEquals(handle, {
        strategy: "sparse-copy",
        devicePath: `${vmDir}/root.ext4`,
        baseImage: base,
        vmFile: `${vmDir}/root.ext4`,
        loops: [],
        dmNames: [],
        sizeBytes: 64 * 1024 * 1024,
      });
      assertEquals(rootDiskHandleSchema.parse(JSON.parse(JSON.stringify(handle))), handle);
      assertEquals(await sha256(handle.vmFile), before, "the copy is identical");
      const baseBlocks = (await Deno.stat(base)).blocks ?? 0;
      const copyBlocks = (await Deno.stat(handle.vmFile)).blocks ?? 0;
      assert(copyBlocks <= baseBlocks, `holes kept: copy ${copyBlocks} blocks, base ${baseBlocks}`);
      await guestWrites(handle);
      assertEquals(
        new TextDecoder().decode(await readExt4File(handle.vmFile, "/etc/hostname")),
        "vm\n",
      );
      assertEquals(new TextDecoder().decode(await readExt4File(base, "/etc/hostname")), "base\n");
      assertEquals(await sha256(base), before, "base unchanged");
      assertEquals((await checkExt4(handle.vmFile)).clean, true);

      const again = await createRootDisk({
        id: "a1",
        baseImage: base,
        vmDir,
        cowBytes: 1 << 30,
        strategy: "sparse-copy",
      });
      assertEquals(again.vmFile, handle.vmFile);
      assertEquals([again.sizeBytes, (await Deno.stat(again.vmFile)).size], [1 << 30, 1 << 30]);
      const grownBlocks = (await Deno.stat(again.vmFile)).blocks ?? 0;
      assert(grownBlocks <= baseBlocks + 64, `grown sparsely: ${grownBlocks} blocks`);
      assertEquals(
        new TextDecoder().decode(await readExt4File(again.vmFile, "/etc/hostname")),
        "vm\n",
        "restart keeps writes",
      );

      await releaseFromJson(handle, false);
      assert((await Deno.stat(handle.vmFile)).isFile, "release without deleteFiles keeps the file");
      await releaseFromJson(handle, true);
      await assertRejects(() => Deno.stat(handle.vmFile), Deno.errors.NotFound);
      await releaseFromJson(handle, true); // twice is harmless
      assertEquals([...Deno.readDirSync(vmDir)].map((e) => e.name), [], "no temp file left");
    });
  },
);

/** Holds when the temp dir is on ext4 (no reflinks) and there is no device-mapper. */
function ext4WithoutDm(): Requirement {
  if (deviceMapper().missing === undefined) return { missing: "device-mapper present: dm wins" };
  const out = new Deno.Command("stat", { args: ["-f", "-c", "%T", tmpDir], stdout: "piped" })
    .outputSync();
  const fs = new TextDecoder().decode(out.stdout).trim();
  return fs === "ext2/ext3" ? {} : { missing: `${tmpDir} is ${fs}, not ext4` };
}

gatedTest("createRootDisk() picks sparse copy on ext4 and says why (root, ext4, no dm)", [
  root(),
  E2FS,
  ext4WithoutDm(),
], async () => {
  await withDirs(async (dir, base) => {
    const report = await rootDiskStrategy(dir);
    assertEquals(report.strategy, "sparse-copy");
    assert(report.reason.includes("/dev/mapper/control"), report.reason);
    assert(report.reason.includes("EOPNOTSUPP"), report.reason);
    const handle = await createRootDisk({
      id: "b2",
      baseImage: base,
      vmDir: `${dir}/vms/b2`,
      cowBytes: 1 << 30,
    });
    assertEquals(handle.strategy, "sparse-copy");
    const forced = await assertRejects(
      () =>
        createRootDisk({
          id: "c3",
          baseImage: base,
          vmDir: `${dir}/vms/c3`,
          cowBytes: 1 << 30,
          strategy: "reflink",
        }),
      RootDiskError,
      "EOPNOTSUPP",
    );
    assertEquals(forced.code, "failed_precondition");
    assertEquals([...Deno.readDirSync(`${dir}/vms/c3`)], [], "failed copy leaves no temp file");
  });
});

gatedTest(
  "createRootDisk() reflinks on a real XFS filesystem (root, loop-mounted xfs image)",
  [root(), E2FS, programs("mkfs.xfs", "mount", "umount")],
  async () => {
    const outer = await Deno.makeTempDir({ prefix: PREFIX });
    const mnt = `${outer}/mnt`;
    let mounted = false;
    try {
      await Deno.mkdir(mnt);
      await Deno.writeFile(`${outer}/xfs.img`, new Uint8Array(0));
      await Deno.truncate(`${outer}/xfs.img`, 320 * 1024 * 1024);
      const mk = await new Deno.Command("mkfs.xfs", {
        args: ["-q", "-m", "reflink=1", `${outer}/xfs.img`],
      }).output();
      assert(mk.success, "mkfs.xfs failed");
      const mount = await new Deno.Command("mount", {
        args: ["-o", "loop", `${outer}/xfs.img`, mnt],
      }).output();
      assert(mount.success, new TextDecoder().decode(mount.stderr));
      mounted = true;
      await withDirs(async (dir, base) => {
        const before = await sha256(base);
        const report = await rootDiskStrategy(dir);
        if (deviceMapper().missing !== undefined) assertEquals(report.strategy, "reflink");
        const handle = await createRootDisk({
          id: "x1",
          baseImage: base,
          vmDir: `${dir}/vms/x1`,
          cowBytes: 0, // the image's own size: the copy is byte-identical
          strategy: "reflink",
        });
        assertEquals(handle.strategy, "reflink");
        assertEquals(await sha256(handle.vmFile), before);
        await guestWrites(handle);
        assertEquals(await sha256(base), before, "base unchanged after guest writes");
        assertEquals(
          new TextDecoder().decode(await readExt4File(handle.vmFile, "/etc/hostname")),
          "vm\n",
        );
        await releaseFromJson(handle, true);
      }, mnt);
    } finally {
      if (mounted) await new Deno.Command("umount", { args: [mnt] }).output();
      await Deno.remove(outer, { recursive: true });
    }
  },
);

gatedTest(
  "createRootDisk() dm snapshot: writes land in the COW, release removes dm and loops (root, device-mapper)",
  [root(), deviceMapper(), E2FS],
  async () => {
    await withDirs(async (dir, base) => {
      const before = await sha256(base);
      const id = `t${crypto.randomUUID().slice(0, 8)}`;
      const handle = await createRootDisk({
        id,
        baseImage: base,
        vmDir: `${dir}/vms/${id}`,
        cowBytes: 128 * 1024 * 1024,
      });
      try {
        assertEquals(handle.strategy, "dm-snapshot");
        assertEquals(handle.dmNames, [`bg-root-${id}-base`, `bg-root-${id}`]);
        assertEquals(handle.sizeBytes, 128 * 1024 * 1024);
        assertEquals(handle.loops.length, 2);
        await writeExt4(handle.devicePath, [{
          kind: "writeFile",
          path: "/etc/hostname",
          text: "vm\n",
        }]);
        assertEquals(await sha256(base), before);
      } finally {
        await releaseFromJson(handle, true);
      }
      assert(!dmList().some((d) => d.name.includes(id)));
      assertEquals(listLoops().filter((l) => l.backingFile.startsWith(dir)), []);
    });
  },
);

gatedTest("root disk tests leave no loop device behind (root)", [root()], () => {
  assertEquals(listLoops().filter((l) => l.backingFile.includes(`/${PREFIX}`)), []);
});
