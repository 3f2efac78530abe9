/**
 * The CLI's Docker/gh habits through the real CLI and daemon processes (simulated guests
 * in a netns): destructive commands ask or need `-f` and refuse with no terminal, `vm
 * list -q` and its ID column, lists as one JSON array, and `vm run`'s exit code 125 for
 * banger's own failures.
 */
import { assert, assertEquals, assertStringIncludes } from "../fixtures/assert.ts";
import { daemonProcess } from "../fixtures/daemon_process.ts";
import { taskFlags } from "../fixtures/banger_cli.ts";
import { gatedTest, programs, root } from "../fixtures/requires.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

gatedTest(
  "banger vm delete/prune ask or need -f, vm list -q and --json, vm run exits 125 on its own failure (root, netns)",
  [root(), programs("ip", "nft", "mkfs.ext4", "debugfs")],
  async (t) => {
    await using d = await daemonProcess();
    assertEquals((await d.cli(["vm", "create", "--name", "dev"])).code, 0);
    assertEquals((await d.cli(["vm", "create", "--name", "off", "--no-start"])).code, 0);
    const names = async () =>
      JSON.parse((await d.cli(["vm", "list", "--json"])).stdout).map((v: { name: string }) =>
        v.name
      ).sort();
    // stdin is a pipe here: `echo y | banger …` must not count as an answer.
    const piped = (args: string[]) =>
      d.ns.run(["deno", "run", ...taskFlags(), MAIN, ...args], {
        env: { BANGER_HOME: d.home },
        stdin: "y\n",
      });

    await t.step("vm delete of a running VM refuses without -f and keeps it", async () => {
      const r = await piped(["vm", "delete", "dev"]);
      assertEquals(r.code, 1, r.stderr);
      assertStringIncludes(r.stderr, `Cannot delete "dev": VM is running`);
      assertStringIncludes(r.stderr, "hint: banger vm stop dev, or banger vm delete -f dev");
      assertEquals(await names(), ["dev", "off"]);
    });

    await t.step("vm prune with no terminal refuses unless -f, then -f deletes", async () => {
      const r = await piped(["vm", "prune"]);
      assertEquals(r.code, 1, r.stderr);
      assertStringIncludes(r.stderr, "This deletes off. Refusing without a terminal to confirm on");
      assertStringIncludes(r.stderr, "hint: pass -f");
      assertEquals(await names(), ["dev", "off"], "nothing was deleted");
      const forced = await d.cli(["vm", "prune", "-f"]);
      assertEquals([forced.code, forced.stdout], [0, "deleted off\n"], forced.stderr);
    });

    await t.step("vm list -q prints names; the table leads with a 12-character ID", async () => {
      assertEquals((await d.cli(["vm", "list", "-q"])).stdout, "dev\n");
      const [head, row] = (await d.cli(["vm", "list"])).stdout.trim().split("\n");
      assert(head.startsWith("ID "), head);
      const id = JSON.parse((await d.cli(["vm", "show", "dev", "--json"])).stdout).id as string;
      assert(row.startsWith(`${id.slice(0, 12)}  dev `), row);
      const byId = await d.cli(["vm", "show", id.slice(0, 12), "--json"]);
      assertEquals(JSON.parse(byId.stdout).name, "dev", "the ID column is a ref");
    });

    await t.step("lists print one JSON array of their rows", async () => {
      for (const args of [["vm", "list"], ["image", "list"], ["kernel", "list"]]) {
        const r = await d.cli([...args, "--json"]);
        assertEquals(r.code, 0, r.stderr);
        assert(Array.isArray(JSON.parse(r.stdout)), `${args.join(" ")} --json is an array`);
      }
    });

    await t.step("vm run exits 125 when banger fails (the name is taken)", async () => {
      const r = await d.cli(["vm", "run", "--name", "dev", "--", "true"]);
      assertEquals(r.code, 125, r.stderr);
      assertStringIncludes(r.stderr, "dev");
      assertEquals(await names(), ["dev"]);
    });

    await t.step("vm delete -f deletes a running VM", async () => {
      const r = await d.cli(["vm", "delete", "-f", "dev"]);
      assertEquals([r.code, r.stdout], [0, "deleted dev\n"], r.stderr);
      assertEquals(await names(), []);
    });
  },
);

gatedTest(
  "banger vm run --rm exits 130 after ^C during the boot, and the VM is rolled back (root, netns)",
  [root(), programs("ip", "nft", "mkfs.ext4", "debugfs")],
  async () => {
    await using d = await daemonProcess();
    // The guest agent never answers in time: the create is still waiting when ^C comes.
    await d.startDaemon({ FAKE_FC_AGENT_DELAY_MS: "600000" });
    const run = new Deno.Command("ip", {
      args: ["netns", "exec", d.ns.name, "deno", "run", ...taskFlags(), MAIN, "vm", "run", "--rm"]
        .concat(["--name", "slow", "--", "true"]),
      env: { BANGER_HOME: d.home },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const listed = async () =>
      JSON.parse((await d.cli(["vm", "list", "--json"])).stdout).map((v: { name: string }) =>
        v.name
      );
    for (let i = 0; i < 600 && !(await listed()).includes("slow"); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assertEquals(await listed(), ["slow"], "the create got as far as recording the VM");
    // `ip netns exec` execs deno in place: the signal reaches the CLI itself.
    run.kill("SIGINT");
    const out = await run.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 130, stderr);
    assertStringIncludes(stderr, "interrupted");
    for (let i = 0; i < 300 && (await listed()).length; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const left = (await d.cli(["vm", "list", "--json"])).stdout;
    assertEquals(JSON.parse(left), [], "the daemon rolled the create back");
  },
);
