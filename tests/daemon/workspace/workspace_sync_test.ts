/**
 * Workspace prepare and export against real git and tar, with the "guest" a local
 * directory behind the GuestShell seam (no VM needed).
 */
import { git } from "../../fixtures/git.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "../../fixtures/assert.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";
import { LocalShell } from "../../fixtures/guest_shell.ts";
import {
  checkBranch,
  checkGuestPath,
  exportWorkspace,
  importWorkspace,
  planWorkspace,
  WorkspaceError,
} from "../../../daemon/workspace/_sync.ts";
import { GitError } from "../../../host/git/git.ts";

const needs = [programs("git", "tar")];

/** A host repo (committed a.txt, lib/b.txt, tool.sh, .gitignore) and an empty "guest" dir. */
async function fixture(): Promise<{ host: string; guest: string } & AsyncDisposable> {
  const top = await Deno.makeTempDir({ prefix: "bg-ws-" });
  const host = `${top}/host`;
  await Deno.mkdir(`${host}/lib`, { recursive: true });
  await git(host, "init", "-q", "-b", "main");
  await Deno.writeTextFile(`${host}/a.txt`, "alpha\n");
  await Deno.writeTextFile(`${host}/lib/b.txt`, "beta\n");
  await Deno.writeTextFile(`${host}/tool.sh`, "#!/bin/sh\necho tool\n", { mode: 0o755 });
  await Deno.writeTextFile(`${host}/.gitignore`, "*.log\n.env\n");
  await git(host, "add", ".");
  await git(host, "commit", "-q", "-m", "initial");
  return {
    host,
    guest: `${top}/guest/repo`,
    async [Symbol.asyncDispose]() {
      await Deno.remove(top, { recursive: true }).catch(() => {});
    },
  };
}

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${dir}/${prefix}`)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (rel === ".git") continue;
    if (e.isDirectory) out.push(...await listFiles(dir, rel));
    else out.push(rel);
  }
  return out.sort();
}

gatedTest(
  "importWorkspace() sends tracked files only by default; untracked ones on request; ignored ones never",
  needs,
  async (t) => {
    await using f = await fixture();
    await Deno.writeTextFile(`${f.host}/notes.txt`, "untracked\n");
    await Deno.writeTextFile(`${f.host}/.env`, "SECRET=1\n");
    await Deno.writeTextFile(`${f.host}/build.log`, "log\n");
    await t.step("tracked only", async () => {
      const plan = await planWorkspace({ hostPath: f.host, guestPath: f.guest });
      assertEquals(plan.files, [".gitignore", "a.txt", "lib/b.txt", "tool.sh"]);
      const base = await importWorkspace(new LocalShell(), plan);
      assertEquals(await listFiles(f.guest), [".gitignore", "a.txt", "lib/b.txt", "tool.sh"]);
      assertEquals(await git(f.guest, "rev-parse", "HEAD"), base);
      assertEquals(base, await git(f.host, "rev-parse", "HEAD"), "a clean tree's base is HEAD");
      assertEquals(await git(f.guest, "branch", "--show-current"), "main");
      assertEquals(await git(f.guest, "status", "--porcelain"), "", "the guest checkout is clean");
      assert(((await Deno.stat(`${f.guest}/tool.sh`)).mode ?? 0) & 0o100, "modes survive");
    });
    await t.step("with --include-untracked", async () => {
      const plan = await planWorkspace({
        hostPath: f.host,
        guestPath: f.guest,
        includeUntracked: true,
      });
      assertEquals(plan.files, [".gitignore", "a.txt", "lib/b.txt", "notes.txt", "tool.sh"]);
      const base = await importWorkspace(new LocalShell(), plan, {
        oldBase: await git(f.host, "rev-parse", "HEAD"),
      });
      assertEquals(await listFiles(f.guest), [
        ".gitignore",
        "a.txt",
        "lib/b.txt",
        "notes.txt",
        "tool.sh",
      ]);
      assertEquals(
        await git(f.guest, "rev-parse", "HEAD^"),
        await git(f.host, "rev-parse", "HEAD"),
      );
      assertEquals(await git(f.guest, "rev-parse", "HEAD"), base, "the snapshot sits on HEAD");
      assertEquals(await git(f.guest, "status", "--porcelain"), "");
    });
  },
);

gatedTest(
  "planWorkspace() refuses submodules outside full_copy and a bare repository, saying what to do",
  needs,
  async (t) => {
    await using f = await fixture();
    await using other = await fixture();
    await t.step("submodules", async () => {
      await git(
        f.host,
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        other.host,
        "vendor/x",
      );
      const err = await assertRejects(
        () => planWorkspace({ hostPath: f.host }),
        WorkspaceError,
        "it has submodules (vendor/x)",
      );
      assertStringIncludes((err as WorkspaceError).hint ?? "", "--mode full_copy");
      const plan = await planWorkspace({ hostPath: f.host, mode: "full_copy", guestPath: f.guest });
      assert(plan.files.includes("vendor/x/a.txt"), "full_copy sends the submodule's files");
      const base = await importWorkspace(new LocalShell(), plan);
      assertEquals(await Deno.readTextFile(`${f.guest}/vendor/x/lib/b.txt`), "beta\n");
      assertEquals(await git(f.guest, "rev-parse", "HEAD"), base);
      assertEquals(await git(f.guest, "status", "--porcelain"), "");
    });
    await t.step("bare", async () => {
      const bare = `${other.host}.git`;
      await git(other.host, "clone", "-q", "--bare", other.host, bare);
      await assertRejects(() => planWorkspace({ hostPath: bare }), GitError, "bare repository");
    });
    await t.step("bad options", async () => {
      await assertRejects(
        () => planWorkspace({ hostPath: other.host, from: "HEAD", includeUntracked: true }),
        WorkspaceError,
        "Cannot combine --from with --include-untracked",
      );
      await assertRejects(
        () => planWorkspace({ hostPath: other.host, guestPath: "repo" }),
        WorkspaceError,
      );
    });
  },
);

gatedTest(
  "exportWorkspace() returns a patch of guest edits, commits, new binary files and deletions that git apply takes, leaving the guest index byte-identical",
  needs,
  async () => {
    await using f = await fixture();
    await Deno.writeTextFile(`${f.host}/a.txt`, "alpha, edited on the host before prepare\n");
    const plan = await planWorkspace({ hostPath: f.host, guestPath: f.guest });
    const shell = new LocalShell();
    const base = await importWorkspace(shell, plan);
    // In the guest: a commit, then uncommitted edits, a new binary file, a deletion and an
    // ignored file (which must not travel back).
    await Deno.writeTextFile(`${f.guest}/lib/b.txt`, "beta, committed in the guest\n");
    await git(f.guest, "commit", "-q", "-am", "guest commit");
    await Deno.writeTextFile(`${f.guest}/a.txt`, "alpha, edited in the guest\n");
    const binary = new Uint8Array(300).map((_, i) => (i * 7) % 256);
    await Deno.writeFile(`${f.guest}/image.bin`, binary);
    await Deno.remove(`${f.guest}/tool.sh`);
    await Deno.writeTextFile(`${f.guest}/debug.log`, "ignored\n");
    await git(f.guest, "add", "image.bin"); // the guest's own staging must survive untouched
    const indexBefore = await Deno.readFile(`${f.guest}/.git/index`);
    const patch = await exportWorkspace(shell, f.guest, base);
    assertEquals(await Deno.readFile(`${f.guest}/.git/index`), indexBefore, "index untouched");
    const leftovers = [...Deno.readDirSync(`${f.guest}/.git`)].filter((e) =>
      e.name.includes("banger-export")
    );
    assertEquals(leftovers, [], "the temporary index is removed");
    const text = new TextDecoder().decode(patch);
    assertStringIncludes(text, "GIT binary patch");
    assert(!text.includes("debug.log"), "ignored files stay out");
    // The host is still at the state that was sent: the patch applies cleanly there.
    await Deno.writeFile(`${f.host}/../export.patch`, patch);
    await git(f.host, "apply", "--check", "../export.patch");
    await git(f.host, "apply", "../export.patch");
    assertEquals(await Deno.readTextFile(`${f.host}/a.txt`), "alpha, edited in the guest\n");
    assertEquals(await Deno.readTextFile(`${f.host}/lib/b.txt`), "beta, committed in the guest\n");
    assertEquals(await Deno.readFile(`${f.host}/image.bin`), binary);
    await Deno.stat(`${f.host}/tool.sh`).then(() => assert(false, "tool.sh was deleted"), () => {});
  },
);

gatedTest(
  "importWorkspace() again removes files deleted on the host, keeps ignored guest files, and --readonly drops write bits",
  needs,
  async () => {
    await using f = await fixture();
    const shell = new LocalShell();
    const first = await importWorkspace(
      shell,
      await planWorkspace({ hostPath: f.host, guestPath: f.guest }),
    );
    await Deno.writeTextFile(`${f.guest}/out.log`, "build output\n");
    await git(f.host, "rm", "-q", "lib/b.txt");
    await git(f.host, "commit", "-q", "-m", "drop b");
    const plan = await planWorkspace({
      hostPath: f.host,
      guestPath: f.guest,
      readonly: true,
      branch: "work/x",
    });
    const second = await importWorkspace(shell, plan, { oldBase: first });
    assertEquals(await listFiles(f.guest), [".gitignore", "a.txt", "out.log", "tool.sh"]);
    assertEquals(await git(f.guest, "branch", "--show-current"), "work/x");
    assertEquals(await git(f.guest, "rev-parse", "refs/banger/base"), second);
    assertEquals(((await Deno.stat(`${f.guest}/a.txt`)).mode ?? 0) & 0o222, 0, "no write bits");
    assert(((await Deno.stat(`${f.guest}/.git`)).mode ?? 0) & 0o200, ".git stays writable");
  },
);

gatedTest(
  "importWorkspace() with from sends that commit's tree and makes it the base",
  needs,
  async () => {
    await using f = await fixture();
    const old = await git(f.host, "rev-parse", "HEAD");
    await Deno.writeTextFile(`${f.host}/c.txt`, "later\n");
    await git(f.host, "add", "c.txt");
    await git(f.host, "commit", "-q", "-m", "later");
    await Deno.writeTextFile(`${f.host}/a.txt`, "dirty\n");
    const plan = await planWorkspace({
      hostPath: f.host,
      guestPath: f.guest,
      from: old,
      branch: "old",
    });
    assertEquals(plan.from, old);
    const base = await importWorkspace(new LocalShell(), plan);
    assertEquals(base, old);
    assertEquals(await listFiles(f.guest), [".gitignore", "a.txt", "lib/b.txt", "tool.sh"]);
    assertEquals(await Deno.readTextFile(`${f.guest}/a.txt`), "alpha\n");
    assertEquals(await git(f.guest, "status", "--porcelain"), "");
  },
);

Deno.test("checkGuestPath() and checkBranch() reject what would escape or confuse git", () => {
  assertEquals(checkGuestPath("/root//repo/"), "/root/repo");
  for (const bad of ["repo", "/", "/root/../etc", "/root/./x", "/a\nb"]) {
    let threw = false;
    try {
      checkGuestPath(bad);
    } catch (err) {
      threw = err instanceof WorkspaceError && err.code === "invalid_argument";
    }
    assert(threw, `guest path ${JSON.stringify(bad)} is refused`);
  }
  assertEquals(checkBranch("feature/x-1"), "feature/x-1");
  for (const bad of ["-x", "a..b", "a b", "x.lock", "a/.b", "HEAD", "a//b", "x/"]) {
    let threw = false;
    try {
      checkBranch(bad);
    } catch (err) {
      threw = err instanceof WorkspaceError;
    }
    assert(threw, `branch ${JSON.stringify(bad)} is refused`);
  }
});
