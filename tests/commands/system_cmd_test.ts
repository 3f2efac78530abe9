import { assert, assertEquals, assertStringIncludes } from "../fixtures/assert.ts";
import { gatedTest, root } from "../fixtures/requires.ts";
import { taskFlags } from "../fixtures/banger_cli.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

async function banger(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const flags = taskFlags("owner");
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, `${ROOT}main.ts`, ...args],
    env: { BANGER_HOME: "/nonexistent-banger-home" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

gatedTest(
  "banger system install|status|uninstall --purge into a temp root (root)",
  [root()],
  async (t) => {
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgr-cli-" });
    try {
      await t.step(
        "install writes the record, units and directories with their owners and modes",
        async () => {
          const r = await banger(["system", "install", "--owner", "nobody", "--root", dir]);
          assertEquals(r.code, 0, r.stderr);
          assertStringIncludes(r.stdout, "Installed banger for nobody (uid 65534)");
          assertStringIncludes(r.stdout, "systemctl was not run");
          const expect: [string, number, number][] = [
            ["etc/banger", 0, 0o755],
            ["etc/banger/install.toml", 0, 0o644],
            ["etc/systemd/system/banger.service", 0, 0o644],
            ["etc/systemd/system/banger-helper.service", 0, 0o644],
            ["var/lib/banger", 65534, 0o700],
            ["var/cache/banger", 65534, 0o700],
            ["run/banger", 65534, 0o700],
            ["run/banger-root", 0, 0o711],
          ];
          for (const [p, uid, mode] of expect) {
            const st = await Deno.stat(`${dir}/${p}`);
            assertEquals([st.uid, (st.mode ?? 0) & 0o7777], [uid, mode], p);
          }
          const unit = await Deno.readTextFile(`${dir}/etc/systemd/system/banger.service`);
          assertStringIncludes(unit, "User=nobody\n");
          assertStringIncludes(unit, ` ${ROOT}main.ts daemon\n`);
        },
      );
      await t.step("status --json reads the record", async () => {
        const r = await banger(["system", "status", "--json", "--root", dir]);
        assertEquals(r.code, 0, r.stderr);
        const st = JSON.parse(r.stdout);
        assertEquals([st.installed, st.ownerUser, st.ownerUid], [true, "nobody", 65534]);
        assertEquals(st.units, ["banger-helper.service", "banger.service"]);
      });
      await t.step("uninstall --purge with no terminal to ask on refuses unless -f", async () => {
        const r = await banger(["system", "uninstall", "--purge", "--root", dir]);
        assertEquals(r.code, 1, r.stderr);
        assertStringIncludes(r.stderr, "Refusing without a terminal to confirm on");
        assertStringIncludes(r.stderr, "hint: pass -f");
        assert(await Deno.lstat(`${dir}/var/lib/banger`).then(() => true), "state is kept");
      });
      await t.step("uninstall --purge -f removes everything it made", async () => {
        const r = await banger(["system", "uninstall", "--purge", "-f", "--root", dir]);
        assertEquals(r.code, 0, r.stderr);
        for (
          const p of [
            "etc/banger",
            "var/lib/banger",
            "run/banger-root",
            "etc/systemd/system/banger.service",
          ]
        ) {
          assert(!(await Deno.lstat(`${dir}/${p}`).then(() => true, () => false)), `${p} is gone`);
        }
        assertEquals((await banger(["system", "status", "--root", dir])).code, 1);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("banger system install without --owner is a usage error (exit 2)", async () => {
  const r = await banger(["system", "install"]);
  assertEquals(r.code, 2);
  assertStringIncludes(r.stderr, "needs --owner USER");
});

gatedTest(
  "banger system install refuses an unknown owner and writes nothing (root)",
  [root()],
  async () => {
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgr-cli-" });
    try {
      const r = await banger(["system", "install", "--owner", "no-such-user-bg", "--root", dir]);
      assertEquals(r.code, 1);
      assertStringIncludes(r.stderr, 'Cannot install for "no-such-user-bg": no such user');
      assertEquals([...Deno.readDirSync(dir)], []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
