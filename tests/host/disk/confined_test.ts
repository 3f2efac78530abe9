import { e2fsAccess } from "../../../host/disk/_confined.ts";
import { createExt4, growExt4, readExt4File, writeExt4 } from "../../../host/disk/ext4.ts";
import { assertEquals } from "../../fixtures/assert.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";

gatedTest(
  "e2fsAccess(confined) runs a tool as a throwaway uid with no groups that reaches the image and nothing else, then gives the image back (root, setpriv)",
  [root(), programs("setpriv")],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bge-" });
    try {
      const image = `${dir}/work.ext4`;
      await Deno.writeTextFile(image, "data", { mode: 0o600 });
      await Deno.writeTextFile(`${dir}/secret`, "root's", { mode: 0o600 });
      const access = await e2fsAccess(image, true);
      let out: string;
      try {
        const script = `id -u; id -G; head -c 4 "$0"; echo; ` +
          `cat /etc/shadow >/dev/null 2>&1 && echo shadow; ` +
          `cat "${dir}/secret" >/dev/null 2>&1 && echo secret; ` +
          `ls "${dir}" >/dev/null 2>&1 && echo listed; ` +
          `grep -q '^CapEff:\\s*0*$' /proc/self/status && echo no-caps`;
        out = new TextDecoder().decode((await access.run("sh", ["-c", script])).stdout);
      } finally {
        await access.close();
      }
      const uid = access.uid ?? 0;
      assertEquals(uid >= 2_000_000_000, true, `uid ${uid}`);
      assertEquals(out.trim().split("\n"), [String(uid), String(uid), "data", "no-caps"]);
      const st = await Deno.stat(image);
      assertEquals([st.uid, st.gid], [0, 0], "the image is root's again");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gatedTest(
  "writeExt4() and growExt4() confined write and grow a real image, leaving it root's (root, e2fsprogs)",
  [root(), programs("setpriv", "mkfs.ext4", "debugfs", "e2fsck", "resize2fs")],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bge-" });
    try {
      const image = `${dir}/work.ext4`;
      await createExt4({ path: image, sizeBytes: 16 << 20, label: "t" });
      const host = `${dir}/host-file`;
      await Deno.writeTextFile(host, "from the host", { mode: 0o600 });
      await writeExt4(image, [
        { kind: "mkdir", path: "/d", mode: 0o755 },
        { kind: "writeFile", path: "/d/a", text: "hello", mode: 0o644 },
        { kind: "writeFile", path: "/d/b", hostFile: host, mode: 0o600 },
      ], { confined: true });
      await growExt4(image, 32 << 20, { confined: true });
      assertEquals(new TextDecoder().decode(await readExt4File(image, "/d/a")), "hello");
      assertEquals(new TextDecoder().decode(await readExt4File(image, "/d/b")), "from the host");
      const st = await Deno.stat(image);
      assertEquals([st.uid, st.size], [0, 32 << 20]);
      const df = await new Deno.Command("dumpe2fs", {
        args: ["-h", image],
        stdout: "piped",
        stderr: "null",
      }).output();
      const blocks = /Block count:\s+(\d+)/.exec(new TextDecoder().decode(df.stdout))?.[1];
      assertEquals(
        Number(blocks) * 1024 >= 30 << 20 || Number(blocks) * 4096 >= 30 << 20,
        true,
        `blocks ${blocks}`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
