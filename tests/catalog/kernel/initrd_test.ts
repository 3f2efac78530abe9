import { gunzipSync } from "node:zlib";
import { buildInitrd, InitrdError, renderInitScript } from "../../../catalog/kernel/initrd.ts";
import { ModuleOrderError } from "../../../catalog/kernel/module_order.ts";
import { networkBootstrap } from "../../../catalog/guest/network_bootstrap.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../../fixtures/assert.ts";
import { gatedTest, path } from "../../fixtures/requires.ts";
import { elfExecutable, elfModule } from "../../fixtures/tiny_elf.ts";

interface Member {
  name: string;
  mode: number;
  data: Uint8Array;
  rdev: [number, number];
}

/** A small newc reader, independent of the writer under test. */
function readNewc(archive: Uint8Array): Member[] {
  const text = new TextDecoder("latin1");
  const members: Member[] = [];
  let at = 0;
  for (;;) {
    assertEquals(text.decode(archive.subarray(at, at + 6)), "070701");
    const field = (i: number) =>
      parseInt(text.decode(archive.subarray(at + 6 + i * 8, at + 14 + i * 8)), 16);
    const size = field(6);
    const nameSize = field(11);
    const name = text.decode(archive.subarray(at + 110, at + 110 + nameSize - 1));
    const dataAt = (at + 110 + nameSize + 3) & ~3;
    if (name === "TRAILER!!!") return members;
    members.push({
      name,
      mode: field(1),
      data: archive.subarray(dataAt, dataAt + size),
      rdev: [field(9), field(10)],
    });
    at = (dataAt + size + 3) & ~3;
  }
}

/** A fake `lib/modules/<release>` with modules.order and modinfo-only modules. */
async function modulesDir(
  deps: Record<string, string[]>,
  extra: Record<string, string> = {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "bgt-modules-" });
  await Deno.mkdir(`${dir}/kernel/drivers`, { recursive: true });
  const order: string[] = [];
  for (const [name, depends] of Object.entries(deps)) {
    const rel = `kernel/drivers/${name.replaceAll("_", "-")}.ko`;
    order.push(rel);
    await Deno.writeFile(
      `${dir}/${rel}`,
      elfModule([`depends=${depends.join(",")}`, `name=${name}`]),
    );
  }
  await Deno.writeTextFile(`${dir}/modules.order`, order.join("\n") + "\n");
  for (const [file, content] of Object.entries(extra)) {
    await Deno.writeTextFile(`${dir}/${file}`, content);
  }
  return dir;
}

const busybox = elfExecutable({ payload: new TextEncoder().encode("pretend busybox") });

Deno.test("buildInitrd() packs busybox, the bootstrap, ordered modules and /init into a gzip'd newc archive", async () => {
  const dir = await modulesDir({
    virtio_blk: ["virtio", "virtio_ring"],
    virtio: ["virtio_ring"],
    virtio_ring: [],
  });
  try {
    const initrd = await buildInitrd({ busybox, modulesDir: dir, modules: ["virtio_blk"] });
    assertEquals(initrd.modules, ["virtio_ring", "virtio", "virtio_blk"]);
    const members = readNewc(gunzipSync(initrd.image));
    assertEquals(members.map((m) => m.name), [
      "bin",
      "dev",
      "lib",
      "lib/modules",
      "newroot",
      "proc",
      "run",
      "sys",
      "work",
      "dev/console",
      "bin/busybox",
      "bin/sh",
      "bin/banger-network-bootstrap",
      "lib/modules/virtio_ring.ko",
      "lib/modules/virtio.ko",
      "lib/modules/virtio_blk.ko",
      "init",
    ]);
    const byName = new Map(members.map((m) => [m.name, m]));
    assertEquals(byName.get("dev/console")?.mode, 0o020600);
    assertEquals(byName.get("dev/console")?.rdev, [5, 1]);
    assertEquals(byName.get("bin/busybox")?.data, busybox);
    assertEquals(byName.get("init")?.mode, 0o100755);
    assertEquals(
      new TextDecoder().decode(byName.get("bin/banger-network-bootstrap")?.data),
      networkBootstrap.script,
    );
    assertStringIncludes(
      new TextDecoder().decode(byName.get("init")?.data),
      "for m in virtio_ring virtio virtio_blk; do",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildInitrd() prefers modules.dep over .modinfo when the package has one", async () => {
  const dir = await modulesDir({ a: [], b: [] }, {
    "modules.dep": "kernel/drivers/a.ko: kernel/drivers/b.ko\nkernel/drivers/b.ko:\n",
  });
  try {
    assertEquals((await buildInitrd({ busybox, modulesDir: dir, modules: ["a"] })).modules, [
      "b",
      "a",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildInitrd() refuses a dynamic busybox, a missing module and a compressed one", async (t) => {
  const dir = await modulesDir({ virtio: ["virtio_ring"] });
  try {
    await t.step("dynamic busybox", async () => {
      const err = await assertRejects(
        () => buildInitrd({ busybox: elfExecutable({ dynamic: true }), modulesDir: dir }),
        InitrdError,
        "dynamically linked",
      );
      assertStringIncludes(err.hint ?? "", "busybox-static");
    });
    await t.step("missing dependency", async () => {
      await assertRejects(
        () => buildInitrd({ busybox, modulesDir: dir, modules: ["virtio"] }),
        ModuleOrderError,
        '"virtio_ring" (needed by "virtio")',
      );
    });
    await t.step("compressed module", async () => {
      await Deno.writeTextFile(`${dir}/modules.order`, "kernel/drivers/virtio.ko.xz\n");
      await assertRejects(
        () => buildInitrd({ busybox, modulesDir: dir, modules: ["virtio"] }),
        InitrdError,
        "is compressed",
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("renderInitScript() honours root=, init= and ro, and rejects odd module names", () => {
  const script = renderInitScript(["virtio_ring", "virtio"]);
  for (
    const part of [
      "root=*) root=${arg#root=}",
      "init=*) init=${arg#init=}",
      "ro) mode=ro",
      'exec switch_root /newroot "$init"',
      "mount -t ext4 -o ro /dev/vdb /work",
    ]
  ) {
    assertStringIncludes(script, part);
  }
  assertThrows(() => renderInitScript(["virtio; reboot"]), InitrdError, "bad name");
});

gatedTest("renderInitScript() is valid busybox sh", [path("/bin/busybox")], async () => {
  const out = await new Deno.Command("/bin/busybox", {
    args: ["sh", "-n", "-c", renderInitScript(["virtio"])],
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
});
