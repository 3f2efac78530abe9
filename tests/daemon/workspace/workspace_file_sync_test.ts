/**
 * `[[file_sync]]` at start: host files and directories land on the work disk (`/root`
 * in the guest) with the right contents and modes, read back from the ext4 image.
 */
import { assertEquals } from "../../fixtures/assert.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { vmHarness } from "../../fixtures/vm_harness.ts";
import { dumpExt4, readExt4File } from "../../../host/disk/ext4.ts";

const needs = [root(), programs("ip", "nft", "mkfs.ext4", "debugfs")];

gatedTest(
  "VM start copies [[file_sync]] files with the entry's mode and directories with their source modes (root, netns)",
  needs,
  async () => {
    const src = await Deno.makeTempDir({ prefix: "bg-fsync-" });
    try {
      await Deno.writeTextFile(`${src}/gitconfig`, "[user]\n\tname = dev\n", { mode: 0o644 });
      await Deno.mkdir(`${src}/tools/bin`, { recursive: true, mode: 0o750 });
      await Deno.chmod(`${src}/tools`, 0o711);
      await Deno.chmod(`${src}/tools/bin`, 0o750);
      await Deno.writeTextFile(`${src}/tools/bin/run.sh`, "#!/bin/sh\necho run\n");
      await Deno.chmod(`${src}/tools/bin/run.sh`, 0o755);
      await Deno.writeTextFile(`${src}/tools/notes.txt`, "notes\n");
      await Deno.chmod(`${src}/tools/notes.txt`, 0o640);
      await using h = await vmHarness({
        config: `
[[file_sync]]
host = "${src}/gitconfig"
guest = "/root/.gitconfig"
mode = "0600"

[[file_sync]]
host = "${src}/tools"
guest = "~/tools"

[[file_sync]]
host = "${src}/missing"
guest = "/root/missing"
`,
      });
      const vm = await h.services.vms.create({ name: "synced" }, h.ctx());
      await h.services.vms.stop(["synced"], h.ctx());
      const disk = `${vm.runtime.vmDir}/work.ext4`;
      const text = async (p: string) => new TextDecoder().decode(await readExt4File(disk, p));
      assertEquals(await text("/.gitconfig"), "[user]\n\tname = dev\n");
      assertEquals(await text("/tools/bin/run.sh"), "#!/bin/sh\necho run\n");
      assertEquals(await text("/tools/notes.txt"), "notes\n");
      const out = await Deno.makeTempDir({ prefix: "bg-fsync-out-", dir: src });
      await dumpExt4(disk, "/tools", out);
      await dumpExt4(disk, "/.gitconfig", out);
      const mode = async (p: string) => ((await Deno.lstat(`${out}/${p}`)).mode ?? 0) & 0o7777;
      assertEquals(await mode(".gitconfig"), 0o600, "a file gets the entry's mode");
      assertEquals(await mode("tools"), 0o711, "a directory keeps its source mode");
      assertEquals(await mode("tools/bin"), 0o750);
      assertEquals(await mode("tools/bin/run.sh"), 0o755, "files in a directory keep theirs");
      assertEquals(await mode("tools/notes.txt"), 0o640);
      const missing = await readExt4File(disk, "/missing").then(() => "present", () => "absent");
      assertEquals(missing, "absent", "a missing host path is skipped");
    } finally {
      await Deno.remove(src, { recursive: true }).catch(() => {});
    }
  },
);
