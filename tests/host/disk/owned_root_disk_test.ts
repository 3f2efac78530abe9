import { HelperOps } from "../../../host/helper/client.ts";
import { HelperServer } from "../../../host/helper/server.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import { helperSocket, vmsDir } from "../../../host/layout.ts";
import {
  createOwnedRootDisk,
  OwnedRootDiskError,
  releaseOwnedRootDisk,
} from "../../../host/disk/owned_root_disk.ts";
import { listLoops } from "../../../host/disk/loop.ts";
import { PrivilegedOpsError } from "../../../host/privileged/privileged_ops.ts";
import { assert, assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { OWNER, type SystemRoot, systemRoot } from "../../fixtures/system_root.ts";

const owner = { uid: OWNER.uid, gid: OWNER.gid };

/** A system root with a 4 MiB base image and an `outside` sentinel dir next to it. */
async function fixture(): Promise<
  { sys: SystemRoot; base: string; outside: string } & AsyncDisposable
> {
  const sys = await systemRoot();
  const base = `${sys.layout.stateDir}/images/test/rootfs.ext4`;
  await Deno.mkdir(`${sys.layout.stateDir}/images/test`, { recursive: true });
  await Deno.mkdir(vmsDir(sys.layout), { recursive: true });
  await Deno.chown(vmsDir(sys.layout), OWNER.uid, OWNER.gid);
  using f = await Deno.open(base, { write: true, create: true });
  await f.truncate(4 << 20);
  await f.write(new TextEncoder().encode("banger base image"));
  await Deno.chown(base, OWNER.uid, OWNER.gid); // the owner daemon builds its images
  const outside = `${sys.root}/outside`;
  await Deno.mkdir(outside, { mode: 0o755 });
  return {
    sys,
    base,
    outside,
    [Symbol.asyncDispose]: () => sys[Symbol.asyncDispose](),
  };
}

const entries = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

gatedTest(
  "createOwnedRootDisk() copies the base into a new 0700 VM dir and hands both to the owner (root)",
  [root()],
  async () => {
    await using f = await fixture();
    const vmDir = `${vmsDir(f.sys.layout)}/vm1`;
    const handle = await createOwnedRootDisk({
      id: "vm1",
      baseImage: f.base,
      vmDir,
      cowBytes: 1 << 20,
    }, owner);
    assertEquals(handle.devicePath, `${vmDir}/root.ext4`);
    assertEquals(handle.sizeBytes, 4 << 20);
    for (const p of [vmDir, `${vmDir}/root.ext4`]) {
      const st = await Deno.stat(p);
      assertEquals([st.uid, st.gid, (st.mode ?? 0) & 0o777], [
        OWNER.uid,
        OWNER.gid,
        0o700 - (st.isFile ? 0o100 : 0),
      ]);
    }
    assertEquals(
      (await Deno.readFile(`${vmDir}/root.ext4`)).subarray(0, 17),
      new TextEncoder().encode("banger base image"),
    );
    const again = await createOwnedRootDisk({
      id: "vm1",
      baseImage: f.base,
      vmDir,
      cowBytes: 8 << 20,
    }, owner);
    assertEquals(again.vmFile, handle.vmFile, "an existing copy is reused");
    assertEquals(
      [again.sizeBytes, (await Deno.stat(again.vmFile)).size],
      [8 << 20, 8 << 20],
      "grown",
    );
    await releaseOwnedRootDisk(handle, { deleteFiles: true });
    assertEquals(entries(vmDir), []);
  },
);

gatedTest(
  "createOwnedRootDisk() fails when the VM dir was swapped for a symlink after validation, writing nothing outside (root)",
  [root()],
  async () => {
    await using f = await fixture();
    const vmDir = `${vmsDir(f.sys.layout)}/vm2`;
    await Deno.mkdir(vmDir);
    // What a compromised owner does between the helper's check and its use:
    await Deno.rename(vmDir, `${vmDir}.real`);
    await Deno.symlink(f.outside, vmDir);
    const err = await assertRejects(
      () => createOwnedRootDisk({ id: "vm2", baseImage: f.base, vmDir, cowBytes: 1 << 20 }, owner),
      OwnedRootDiskError,
      "symbolic links (ELOOP)",
    );
    assertEquals(err.code, "permission_denied");
    assertEquals(entries(f.outside), []);
  },
);

gatedTest(
  "releaseOwnedRootDisk() does not delete through a swapped symlink (root)",
  [root()],
  async () => {
    await using f = await fixture();
    const vmDir = `${vmsDir(f.sys.layout)}/vm3`;
    const handle = await createOwnedRootDisk({
      id: "vm3",
      baseImage: f.base,
      vmDir,
      cowBytes: 1 << 20,
    }, owner);
    await Deno.writeTextFile(`${f.outside}/root.ext4`, "not banger's");
    await Deno.rename(vmDir, `${vmDir}.real`);
    await Deno.symlink(f.outside, vmDir);
    await assertRejects(
      () => releaseOwnedRootDisk(handle, { deleteFiles: true }),
      OwnedRootDiskError,
    );
    assertEquals(await Deno.readTextFile(`${f.outside}/root.ext4`), "not banger's");
  },
);

gatedTest(
  "createRootDisk through the helper, raced by an owner swapping the VM dir for a symlink, never writes outside (root, setpriv)",
  [root(), programs("setpriv")],
  async () => {
    await using f = await fixture();
    const socket = helperSocket(f.sys.root);
    const server = new HelperServer({
      socketPath: socket,
      ops: new InProcessOps(f.sys.layout, { owner }),
      ownerUid: OWNER.uid,
      ownerGid: OWNER.gid,
      version: "test",
      log: () => {},
    });
    await server.listen();
    const client = new HelperOps({ socketPath: socket, local: new InProcessOps(f.sys.layout) });
    const vms = vmsDir(f.sys.layout);
    await Deno.mkdir(`${vms}/race`);
    await Deno.chown(`${vms}/race`, OWNER.uid, OWNER.gid);
    // The owner flips vms/race between its real directory and a symlink to `outside`.
    const swapper = new Deno.Command("setpriv", {
      args: [
        `--reuid=${OWNER.uid}`,
        `--regid=${OWNER.gid}`,
        "--clear-groups",
        "sh",
        "-c",
        `cd "$1" && while :; do mv race race.real; ln -s "$2" race; rm race; mv race.real race; done`,
        "swapper",
        vms,
        f.outside,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    let ok = 0;
    let refused = 0;
    try {
      for (let i = 0; i < 150; i++) {
        try {
          const h = await client.createRootDisk({
            id: "race",
            baseImage: f.base,
            vmDir: `${vms}/race`,
            cowBytes: 1 << 20,
          });
          ok++;
          await client.releaseRootDisk({ handle: h, deleteFiles: true }).catch(() => {});
        } catch (err) {
          assert(err instanceof PrivilegedOpsError, String(err));
          assert(
            ["permission_denied", "invalid_argument", "not_found"].includes(err.code),
            err.message,
          );
          refused++;
        }
      }
    } finally {
      swapper.kill("SIGKILL");
      await swapper.status;
      await server.close();
    }
    assertEquals(
      entries(f.outside),
      [],
      `nothing outside after ${ok} copies and ${refused} refusals`,
    );
    assert(ok + refused === 150);
  },
);

gatedTest(
  "createOwnedRootDisk() refuses a base, copy or COW that is a hard link to root's file, for every strategy, leaving nothing (root)",
  [root()],
  async () => {
    await using f = await fixture();
    const secret = `${f.sys.root}/secret`;
    await Deno.writeTextFile(secret, "root only");
    await Deno.chmod(secret, 0o600);
    const vms = vmsDir(f.sys.layout);
    const linkedBase = `${f.sys.layout.stateDir}/images/test/linked.ext4`;
    await Deno.link(secret, linkedBase);
    const cases: { name: string; plant?: string; base: string; strategy?: "dm-snapshot" }[] = [
      { name: "base-copy", base: linkedBase },
      { name: "base-snap", base: linkedBase, strategy: "dm-snapshot" },
      { name: "copy", plant: "root.ext4", base: f.base },
      { name: "cow", plant: "root.cow", base: f.base, strategy: "dm-snapshot" },
    ];
    for (const c of cases) {
      const vmDir = `${vms}/${c.name}`;
      await Deno.mkdir(vmDir, { mode: 0o700 });
      await Deno.chown(vmDir, OWNER.uid, OWNER.gid);
      if (c.plant) await Deno.link(secret, `${vmDir}/${c.plant}`);
      const err = await assertRejects(
        () =>
          createOwnedRootDisk({
            id: c.name,
            baseImage: c.base,
            vmDir,
            cowBytes: 1 << 20,
            strategy: c.strategy,
          }, owner),
        OwnedRootDiskError,
        "belongs to uid 0, not to the owner",
      );
      assertEquals(err.code, "permission_denied", c.name);
      assertEquals(entries(vmDir), c.plant ? [c.plant] : [], `${c.name}: nothing made`);
      assertEquals((await Deno.stat(secret)).mode ?? 0, 0o100600, "root's file untouched");
    }
    const loops = listLoops().filter((l) => l.backingFile.startsWith(f.sys.root));
    assertEquals(loops, [], "no loop was attached");
  },
);

gatedTest(
  "createOwnedRootDisk() refuses the owner's file with a second hard link as a COW (root)",
  [root()],
  async () => {
    await using f = await fixture();
    const vmDir = `${vmsDir(f.sys.layout)}/twice`;
    await Deno.mkdir(vmDir, { mode: 0o700 });
    await Deno.chown(vmDir, OWNER.uid, OWNER.gid);
    await Deno.writeTextFile(`${vmDir}/root.cow`, "");
    await Deno.chown(`${vmDir}/root.cow`, OWNER.uid, OWNER.gid);
    await Deno.link(`${vmDir}/root.cow`, `${vmDir}/other`);
    await assertRejects(
      () =>
        createOwnedRootDisk(
          { id: "twice", baseImage: f.base, vmDir, cowBytes: 1 << 20, strategy: "dm-snapshot" },
          owner,
        ),
      OwnedRootDiskError,
      "has 2 hard links",
    );
  },
);
