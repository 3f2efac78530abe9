import { dmBackingFiles } from "../../../host/disk/dm_sysfs.ts";
import { assertEquals } from "../../fixtures/assert.ts";

Deno.test("dmBackingFiles() follows a snapshot through its padded origin down to the loops' files", async () => {
  const sys = await Deno.makeTempDir({ prefix: "bgd-" });
  try {
    const dev = async (name: string, files: Record<string, string>) => {
      await Deno.mkdir(`${sys}/class/block/${name}/slaves`, { recursive: true });
      for (const [f, text] of Object.entries(files)) {
        await Deno.mkdir(`${sys}/class/block/${name}/${f.split("/").slice(0, -1).join("/")}`, {
          recursive: true,
        });
        await Deno.writeTextFile(`${sys}/class/block/${name}/${f}`, text);
      }
    };
    await dev("loop0", { "loop/backing_file": "/var/lib/banger/images/x/rootfs.ext4\n" });
    await dev("loop1", { "loop/backing_file": "/var/lib/banger/vms/a/root.cow\n" });
    await dev("sda", {});
    await dev("dm-0", { "dm/name": "vg-root\n" });
    await dev("dm-1", { "dm/name": "bg-root-a-base\n" });
    await dev("dm-2", { "dm/name": "bg-root-a\n" });
    const slave = (of: string, name: string) =>
      Deno.writeTextFile(`${sys}/class/block/${of}/slaves/${name}`, "");
    await slave("dm-0", "sda");
    await slave("dm-1", "loop0");
    await slave("dm-2", "dm-1");
    await slave("dm-2", "loop1");
    assertEquals(dmBackingFiles("bg-root-a", sys), [
      "/var/lib/banger/images/x/rootfs.ext4",
      "/var/lib/banger/vms/a/root.cow",
    ]);
    assertEquals(dmBackingFiles("vg-root", sys), ["sda (not a loop device)"]);
    assertEquals(dmBackingFiles("bg-root-gone", sys), undefined);
  } finally {
    await Deno.remove(sys, { recursive: true });
  }
});
