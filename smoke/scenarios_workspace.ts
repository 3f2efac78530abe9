/**
 * Workspace scenarios: a repo into the guest and changes back out. They share the
 * fixture repo, so they run one after another.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "../tests/fixtures/assert.ts";
import { git } from "../tests/fixtures/git.ts";
import { expectCode, expectOk, json, type Scenario, type ScenarioContext } from "./scenario.ts";

/** Creates the shared fixture repo: tracked files, an untracked file and an ignored one. */
export async function createFixtureRepo(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/src`, { recursive: true });
  await Deno.writeTextFile(`${dir}/README.md`, "# fixture\n");
  await Deno.writeTextFile(`${dir}/src/test.sh`, "#!/bin/sh\necho tests pass\n");
  await Deno.chmod(`${dir}/src/test.sh`, 0o755);
  await Deno.writeTextFile(`${dir}/.gitignore`, "*.log\n");
  await git(dir, "init", "-q", "-b", "main");
  await git(dir, "add", "-A");
  await git(dir, "commit", "-q", "-m", "fixture");
  await Deno.writeTextFile(`${dir}/untracked.txt`, "not committed\n");
  await Deno.writeTextFile(`${dir}/secret.log`, "ignored\n");
}

async function prepared(c: ScenarioContext, label: string, ...flags: string[]): Promise<string> {
  const name = c.vmName(label);
  await c.ok(["vm", "create", "--name", name]);
  await c.ok(["vm", "workspace", "prepare", name, c.repo, ...flags]);
  return name;
}

/** The trimmed output of `banger vm exec <name> -- <argv>`, which must succeed. */
async function guest(c: ScenarioContext, name: string, ...argv: string[]): Promise<string> {
  return (await c.ok(["vm", "exec", name, "--", ...argv])).stdout.trim();
}

/** The workspace scenarios. */
export const WORKSPACE_SCENARIOS: Scenario[] = [
  {
    name: "repo_run",
    description:
      "vm run ./repo lands the tracked files (not untracked or ignored) and the repository's history at /root/repo",
    class: "repodir",
    async run(c) {
      const hostHead = new TextDecoder().decode(
        (await new Deno.Command("git", { args: ["-C", c.repo, "rev-parse", "HEAD"] }).output())
          .stdout,
      ).trim();
      const r = await c.ok([
        "vm",
        "run",
        "--rm",
        "--name",
        c.vmName("repo"),
        c.repo,
        "--",
        "sh",
        "-c",
        "cat /root/repo/README.md; ls -a /root/repo; git -C /root/repo log --format=%H",
      ]);
      assertStringIncludes(r.stdout, "# fixture");
      assertStringIncludes(r.stdout, hostHead, "overlay mode brings the host's commits");
      assert(!r.stdout.includes("untracked.txt"), "untracked files stay home");
      assert(!r.stdout.includes("secret.log"), "ignored files stay home");
    },
  },
  {
    name: "include_untracked",
    description: "vm run --include-untracked also sends untracked (not ignored) files",
    class: "repodir",
    async run(c) {
      const r = await c.ok([
        "vm",
        "run",
        "--rm",
        "--include-untracked",
        "--name",
        c.vmName("untr"),
        c.repo,
        "--",
        "ls",
        "-a",
        "/root/repo",
      ]);
      assertStringIncludes(r.stdout, "untracked.txt");
      assert(!r.stdout.includes("secret.log"), "ignored files still stay home");
    },
  },
  {
    name: "exec_exit_code",
    description: "vm exec runs in the workspace and propagates the exit code",
    class: "repodir",
    async run(c) {
      const name = await prepared(c, "exec");
      assertEquals(await guest(c, name, "pwd"), "/root/repo");
      assertEquals(await guest(c, name, "./src/test.sh"), "tests pass");
      expectCode(
        await c.banger(["vm", "exec", name, "--", "sh", "-c", "exit 3"]),
        3,
        "vm exec exit 3",
      );
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "workspace_export",
    description:
      "guest edits, a guest commit, a binary file and a deletion come back as a patch that applies",
    class: "repodir",
    async run(c) {
      const name = await prepared(c, "exp");
      await c.ok([
        "vm",
        "exec",
        name,
        "--",
        "sh",
        "-c",
        [
          "echo changed >> README.md",
          "printf '\\000\\001binary' > blob.bin",
          "git rm -q src/test.sh",
          "git -c user.name=g -c user.email=g@x commit -qam 'guest commit'",
          "echo after-commit > later.txt",
        ].join(" && "),
      ]);
      const patch = `${c.scratch}/changes.patch`;
      await c.ok(["vm", "workspace", "export", name, "--output", patch]);
      const clone = `${c.scratch}/clone`;
      await git(c.scratch, "clone", "-q", c.repo, clone);
      await git(clone, "apply", "--check", patch);
      await git(clone, "apply", patch);
      assertStringIncludes(await Deno.readTextFile(`${clone}/README.md`), "changed");
      assertEquals(await Deno.readTextFile(`${clone}/later.txt`), "after-commit\n");
      assertEquals((await Deno.readFile(`${clone}/blob.bin`)).length, 8);
      await Deno.stat(`${clone}/src/test.sh`).then(
        () => assert(false, "deletion not applied"),
        () => {},
      );
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "export_base_commit",
    description: "workspace export --base-commit diffs against the given commit",
    class: "repodir",
    async run(c) {
      const name = await prepared(c, "base");
      const base = await guest(c, name, "git", "rev-parse", "HEAD");
      await guest(
        c,
        name,
        "sh",
        "-c",
        "echo one > one.txt && git add one.txt && git -c user.name=g -c user.email=g@x commit -qm one",
      );
      const mid = await guest(c, name, "git", "rev-parse", "HEAD");
      await guest(c, name, "sh", "-c", "echo two > two.txt");
      const all = (await c.ok(["vm", "workspace", "export", name, "--base-commit", base])).stdout;
      const later = (await c.ok(["vm", "workspace", "export", name, "--base-commit", mid])).stdout;
      assertStringIncludes(all, "one.txt");
      assertStringIncludes(later, "two.txt");
      assert(!later.includes("one.txt"), "changes before --base-commit are left out");
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "workspace_stop_start",
    description: "a prepared workspace survives vm stop and start",
    class: "repodir",
    async run(c) {
      const name = await prepared(c, "ss");
      await guest(c, name, "sh", "-c", "echo kept > marker.txt");
      await c.ok(["vm", "stop", name]);
      await c.ok(["vm", "start", name]);
      assertEquals(await guest(c, name, "cat", "marker.txt"), "kept");
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "readonly",
    description: "workspace prepare --readonly drops write bits",
    class: "repodir",
    async run(c) {
      const name = await prepared(c, "ro", "--readonly");
      // root ignores modes, so look at the bits themselves.
      assertEquals(await guest(c, name, "stat", "-c", "%A", "README.md"), "-r--r--r--");
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "full_copy",
    description:
      "workspace prepare --mode full_copy (with --include-untracked) copies the tree and commits it in the guest, without host history",
    class: "repodir",
    async run(c) {
      const name = await prepared(c, "full", "--mode", "full_copy", "--include-untracked");
      const listing = await guest(c, name, "ls", "-a");
      assertStringIncludes(listing, "untracked.txt");
      assertStringIncludes(listing, ".git");
      // No host history: the copy is one commit made in the guest, holding every file sent.
      assertEquals(
        await guest(c, name, "git", "log", "--format=%s"),
        "banger: workspace snapshot",
        "full_copy commits the copy in the guest, without the host's history",
      );
      const committed = (await guest(c, name, "git", "ls-files")).split("\n");
      for (const f of ["README.md", "src/test.sh", "untracked.txt"]) {
        assert(committed.includes(f), `${f} is in the guest's commit: ${committed.join(", ")}`);
      }
      assert(!committed.includes("secret.log"), "ignored files are never sent");
      assertEquals(await guest(c, name, "git", "status", "--porcelain", "--", "README.md"), "");
      const shown = json<{ workspace?: { mode: string } }>(
        await c.ok(["vm", "show", name, "--json"]),
      );
      assertEquals(shown.workspace?.mode, "full_copy");
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "ports",
    description: "vm ports sees a listener started in the guest",
    class: "pure",
    async run(c) {
      const name = c.vmName("ports");
      await c.ok(["vm", "create", "--name", name]);
      await c.ok([
        "vm",
        "ssh",
        name,
        "--",
        "sh",
        "-c",
        "nohup socat TCP-LISTEN:8080,fork,reuseaddr EXEC:cat >/dev/null 2>&1 &",
      ]);
      let seen = false;
      for (let i = 0; i < 20 && !seen; i++) {
        const r = expectOk(await c.banger(["vm", "ports", name, "--json"]), "vm ports");
        seen = r.stdout.includes("8080");
        if (!seen) await new Promise((res) => setTimeout(res, 500));
      }
      assert(seen, "port 8080 listed");
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "cp",
    description:
      "vm cp round-trips a tree (a 200 MB file, a symlink, an empty dir) byte for byte with modes, both ways; a failed copy leaves nothing",
    class: "pure",
    async run(c) {
      const name = c.vmName("cp");
      await c.ok(["vm", "create", "--name", name]);
      const src = `${c.scratch}/tree`;
      await Deno.mkdir(`${src}/sub/empty`, { recursive: true });
      await sh(c, `head -c 200M /dev/urandom > "${src}/big" && chmod 640 "${src}/big"`);
      await Deno.writeTextFile(`${src}/sub/run.sh`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
      await Deno.chmod(`${src}/sub/run.sh`, 0o755);
      await Deno.chmod(`${src}/sub/empty`, 0o700);
      await Deno.symlink("sub/run.sh", `${src}/link`);
      await Deno.utime(`${src}/big`, 1_700_000_000, 1_700_000_000);
      const listing =
        `find . -printf '%P %m %y %l\\n' | sort; find . -type f -printf '%P %Ts\\n' | sort; ` +
        "sha256sum big sub/run.sh";
      const hostTree = await sh(c, `cd "${src}" && ${listing}`);
      await c.ok(["vm", "cp", src, `${name}:/root/`]);
      const guestTree =
        (await c.ok(["vm", "ssh", name, "--", "sh", "-c", `cd /root/tree && ${listing}`]))
          .stdout;
      assertEquals(guestTree, hostTree, "into the guest: the same tree, modes, mtimes and bytes");
      await c.ok(["vm", "cp", `${name}:/root/tree`, `${c.scratch}/back`]);
      assertEquals(await sh(c, `cd "${c.scratch}/back" && ${listing}`), hostTree, "and back again");
      const missing = await c.banger([
        "vm",
        "cp",
        `${name}:/root/nothing-here`,
        `${c.scratch}/out`,
      ]);
      assert(missing.code !== 0, "a missing guest path fails");
      assertStringIncludes(missing.stderr, "no such file or directory: /root/nothing-here");
      const noHost = await c.banger(["vm", "cp", `${c.scratch}/nothing-here`, `${name}:/root/x`]);
      assert(noHost.code !== 0, "a missing host path fails");
      assertStringIncludes(noHost.stderr, "no such file or directory");
      const left = [...Deno.readDirSync(c.scratch)].map((e) => e.name).sort();
      assertEquals(left, ["back", "tree"], "nothing partial on the host");
      const guestLeft = (await c.ok(["vm", "ssh", name, "--", "ls", "-A", "/root"])).stdout;
      assert(!guestLeft.includes(".banger-cp-") && !guestLeft.includes("\nx\n"), guestLeft);
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
];

/** Runs a host shell command and returns its stdout (fails the scenario otherwise). */
async function sh(c: ScenarioContext, script: string): Promise<string> {
  const out = await c.env.exec(["sh", "-c", script]);
  assertEquals(out.code, 0, `${script}: ${out.stderr}`);
  return out.stdout;
}
