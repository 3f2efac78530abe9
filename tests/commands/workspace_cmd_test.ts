/**
 * The workspace commands through the real CLI and daemon processes (simulated guests in
 * a netns): dry runs, refusals with their messages and exit codes, and `vm ports`.
 */
import { git } from "../fixtures/git.ts";
import { assert, assertEquals, assertStringIncludes } from "../fixtures/assert.ts";
import { daemonProcess } from "../fixtures/daemon_process.ts";
import { gatedTest, programs, root } from "../fixtures/requires.ts";

const needs = [root(), programs("ip", "nft", "mkfs.ext4", "debugfs", "git")];

gatedTest(
  "banger vm workspace/run/exec/ports: dry runs list files and create nothing, refusals say what to do (root, netns)",
  needs,
  async (t) => {
    const repo = await Deno.makeTempDir({ prefix: "bg-wscli-" });
    try {
      await git(repo, "init", "-q", "-b", "main");
      await Deno.writeTextFile(`${repo}/main.c`, "int main(){}\n");
      await Deno.writeTextFile(`${repo}/.gitignore`, ".env\n");
      await git(repo, "add", ".");
      await git(repo, "commit", "-q", "-m", "one");
      await Deno.writeTextFile(`${repo}/.env`, "TOKEN=x\n");
      await Deno.writeTextFile(`${repo}/draft.txt`, "draft\n");
      await using d = await daemonProcess();
      await d.startDaemon({ FAKE_FC_GUEST_PORTS: "tcp:8080:python3,udp:5353:avahi" });
      assertEquals((await d.cli(["vm", "create", "--name", "dev"])).code, 0);

      await t.step("vm workspace prepare --dry-run", async () => {
        const r = await d.cli(["vm", "workspace", "prepare", "dev", repo, "--dry-run"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.stdout, ".gitignore\nmain.c\n");
        assertStringIncludes(r.stderr, "dry run: would send 2 files");
        const all = await d.cli([
          "vm",
          "workspace",
          "prepare",
          "dev",
          repo,
          "--dry-run",
          "--include-untracked",
          "--json",
        ]);
        assertEquals(JSON.parse(all.stdout).files, [".gitignore", "draft.txt", "main.c"]);
        const show = JSON.parse((await d.cli(["vm", "show", "dev", "--json"])).stdout);
        assertEquals(show.workspace, undefined, "a dry run records nothing");
      });

      await t.step("vm run PATH --dry-run creates no VM", async () => {
        const r = await d.cli(["vm", "run", repo, "--dry-run"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.stdout, ".gitignore\nmain.c\n");
        const list = JSON.parse((await d.cli(["vm", "list", "--json"])).stdout);
        assertEquals(list.map((v: { name: string }) => v.name), ["dev"]);
      });

      await t.step("vm run refuses a bare repository before creating anything", async () => {
        const bare = `${repo}.git`;
        await git(repo, "clone", "-q", "--bare", repo, bare);
        try {
          const r = await d.cli(["vm", "run", bare, "--", "true"]);
          assertEquals(r.code, 125, "banger's own failure, not the command's");
          assertStringIncludes(r.stderr, "it is a bare repository");
          assertStringIncludes(r.stderr, "hint: clone it");
          const list = JSON.parse((await d.cli(["vm", "list", "--json"])).stdout);
          assertEquals(list.length, 1, "no VM was created");
        } finally {
          await Deno.remove(bare, { recursive: true });
        }
      });

      await t.step("vm ports shows the agent's sockets as <name>.vm endpoints", async () => {
        const r = await d.cli(["vm", "ports", "dev"]);
        assertEquals(r.code, 0, r.stderr);
        assertStringIncludes(r.stdout, "dev.vm:8080");
        assertStringIncludes(r.stdout, "python3");
        const j = JSON.parse((await d.cli(["vm", "ports", "dev", "--json"])).stdout);
        assertEquals(
          j[0].ports.map((p: { proto: string; port: number }) => `${p.proto}/${p.port}`),
          ["udp/5353", "tcp/8080"],
        );
      });

      await t.step("usage errors and a stopped VM", async () => {
        const noCmd = await d.cli(["vm", "exec", "dev"]);
        assertEquals(noCmd.code, 2);
        assertStringIncludes(noCmd.stderr, "Missing the command to run after --");
        const badMode = await d.cli(["vm", "workspace", "prepare", "dev", repo, "--mode", "x"]);
        assertEquals(badMode.code, 2);
        const stray = await d.cli(["vm", "run", "--dry-run"]);
        assertEquals(stray.code, 2);
        assertStringIncludes(stray.stderr, "--dry-run needs a repository PATH");
        assertEquals((await d.cli(["vm", "stop", "dev"])).code, 0);
        const exec = await d.cli(["vm", "exec", "dev", "--", "true"]);
        assertEquals(exec.code, 1);
        assertStringIncludes(exec.stderr, `Cannot run a command in "dev": VM is stopped`);
        assertStringIncludes(exec.stderr, "hint: banger vm start dev");
        const prep = await d.cli(["vm", "workspace", "prepare", "dev", repo]);
        assert(prep.code === 1 && prep.stderr.includes("VM is stopped"), prep.stderr);
      });
    } finally {
      await Deno.remove(repo, { recursive: true }).catch(() => {});
    }
  },
);
