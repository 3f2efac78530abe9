import { git } from "../../fixtures/git.ts";
import { assert, assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { GitError, GitRepo, SNAPSHOT_REF } from "../../../host/git/git.ts";

const needsGit = [programs("git")];

/** A temp repo with one commit (a.txt, dir/b.txt), removed on dispose. */
async function tempRepo(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "bg-git-" });
  await git(dir, "init", "-q", "-b", "main");
  await Deno.writeTextFile(`${dir}/a.txt`, "a\n");
  await Deno.mkdir(`${dir}/dir`);
  await Deno.writeTextFile(`${dir}/dir/b.txt`, "b\n");
  await git(dir, "add", ".");
  await git(dir, "commit", "-q", "-m", "one");
  return {
    dir,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

gatedTest(
  "GitRepo.open() finds the root from a subdirectory, with HEAD and branch",
  needsGit,
  async () => {
    await using r = await tempRepo();
    const repo = await GitRepo.open(`${r.dir}/dir`);
    assertEquals(repo.root, await Deno.realPath(r.dir));
    assertEquals(repo.gitDir, `${await Deno.realPath(r.dir)}/.git`);
    assertEquals(await repo.head(), await git(r.dir, "rev-parse", "HEAD"));
    assertEquals(await repo.branch(), "main");
    await git(r.dir, "checkout", "-q", "--detach");
    assertEquals(await repo.branch(), undefined, "a detached HEAD has no branch");
  },
);

gatedTest(
  "GitRepo.open() refuses a bare repository, a plain directory and a missing path",
  needsGit,
  async (t) => {
    await using r = await tempRepo();
    await t.step("bare", async () => {
      const bare = `${r.dir}/../${r.dir.split("/").at(-1)}-bare.git`;
      await git(r.dir, "clone", "-q", "--bare", r.dir, bare);
      try {
        const err = await assertRejects(() => GitRepo.open(bare), GitError, "bare repository");
        assertEquals((err as GitError).code, "failed_precondition");
        assert((err as GitError).hint?.includes("git clone"), "the hint says to clone it");
      } finally {
        await Deno.remove(bare, { recursive: true });
      }
    });
    await t.step("not a repository", async () => {
      const plain = await Deno.makeTempDir({ prefix: "bg-plain-" });
      try {
        await assertRejects(() => GitRepo.open(plain), GitError, "not inside a git repository");
      } finally {
        await Deno.remove(plain);
      }
    });
    await t.step("missing", async () => {
      const err = await assertRejects(() => GitRepo.open(`${r.dir}/nope`), GitError);
      assertEquals((err as GitError).code, "not_found");
    });
  },
);

gatedTest(
  "GitRepo lists tracked files without deleted ones, and untracked ones without ignored ones",
  needsGit,
  async () => {
    await using r = await tempRepo();
    await Deno.writeTextFile(`${r.dir}/.gitignore`, "*.log\nsecret/\n");
    await git(r.dir, "add", ".gitignore");
    await Deno.writeTextFile(`${r.dir}/new file.txt`, "n\n");
    await Deno.writeTextFile(`${r.dir}/debug.log`, "l\n");
    await Deno.mkdir(`${r.dir}/secret`);
    await Deno.writeTextFile(`${r.dir}/secret/key`, "k\n");
    await Deno.remove(`${r.dir}/dir/b.txt`);
    const repo = await GitRepo.open(r.dir);
    assertEquals(await repo.trackedFiles(), [".gitignore", "a.txt"]);
    assertEquals(await repo.untrackedFiles(), ["new file.txt"]);
    assertEquals(await repo.filesAt("HEAD"), ["a.txt", "dir/b.txt"]);
  },
);

gatedTest(
  "GitRepo.submodules() lists gitlinks; resolveCommit() rejects unknown revisions",
  needsGit,
  async () => {
    await using r = await tempRepo();
    await using sub = await tempRepo();
    await git(
      r.dir,
      "-c",
      "protocol.file.allow=always",
      "submodule",
      "add",
      "-q",
      sub.dir,
      "vendor/lib",
    );
    const repo = await GitRepo.open(r.dir);
    assertEquals(await repo.submodules(), ["vendor/lib"]);
    const files = await repo.trackedFiles({ recurseSubmodules: true });
    assert(files.includes("vendor/lib/a.txt") && !files.includes("vendor/lib"), files.join(","));
    const err = await assertRejects(
      () => repo.resolveCommit("no-such-rev"),
      GitError,
      "no such commit",
    );
    assertEquals((err as GitError).code, "invalid_argument");
    await assertRejects(() => repo.resolveCommit("--all"), GitError, "not a revision");
  },
);

gatedTest(
  "GitRepo.snapshot() commits exactly the given files on top of HEAD without touching the repository",
  needsGit,
  async () => {
    await using r = await tempRepo();
    const head = await git(r.dir, "rev-parse", "HEAD");
    await Deno.writeTextFile(`${r.dir}/a.txt`, "changed\n");
    await Deno.writeTextFile(`${r.dir}/untracked.txt`, "u\n");
    await Deno.writeFile(`${r.dir}/blob.bin`, new Uint8Array([0, 1, 2, 255]));
    const indexBefore = await Deno.readFile(`${r.dir}/.git/index`);
    const refsBefore = await git(r.dir, "for-each-ref");
    const objectsBefore = await git(r.dir, "count-objects");
    const repo = await GitRepo.open(r.dir);
    let commit: string;
    {
      await using snap = await repo.snapshot(["a.txt", "blob.bin", "dir/b.txt"], head);
      commit = snap.commit;
      const bundle = snap.bundle();
      const bytes = new Uint8Array(await new Response(bundle.stdout).arrayBuffer());
      await bundle.stderr.cancel();
      assert((await bundle.status).success, "git bundle succeeded");
      const text = new TextDecoder().decode(bytes.subarray(0, 200));
      assert(text.startsWith("# v2 git bundle") && text.includes(SNAPSHOT_REF), text);
      // The bundle is complete: a fresh repository can fetch the snapshot with its parent.
      const other = await Deno.makeTempDir({ prefix: "bg-git-other-" });
      try {
        await Deno.writeFile(`${other}/s.bundle`, bytes);
        await git(other, "init", "-q");
        await git(other, "fetch", "-q", "s.bundle", SNAPSHOT_REF);
        assertEquals(await git(other, "rev-parse", "FETCH_HEAD"), commit);
        assertEquals(await git(other, "rev-parse", "FETCH_HEAD^"), head);
        assertEquals(
          await git(other, "ls-tree", "-r", "--name-only", "FETCH_HEAD"),
          "a.txt\nblob.bin\ndir/b.txt",
        );
        assertEquals(await git(other, "show", "FETCH_HEAD:a.txt"), "changed");
      } finally {
        await Deno.remove(other, { recursive: true });
      }
    }
    assertEquals(await Deno.readFile(`${r.dir}/.git/index`), indexBefore, "index untouched");
    assertEquals(await git(r.dir, "for-each-ref"), refsBefore, "refs untouched");
    assertEquals(await git(r.dir, "count-objects"), objectsBefore, "no objects added");
    const left = [...Deno.readDirSync(`${r.dir}/.git`)].filter((e) => e.name.startsWith("banger"));
    assertEquals(left, [], "the temporary store is gone");
  },
);

gatedTest("GitRepo.snapshot() of files equal to HEAD is HEAD itself", needsGit, async () => {
  await using r = await tempRepo();
  const repo = await GitRepo.open(r.dir);
  const head = await repo.head();
  await using snap = await repo.snapshot(["a.txt", "dir/b.txt"], head);
  assertEquals(snap.commit, head);
});

gatedTest(
  "GitRepo runs git as the repository's owner when we are root (root)",
  [...needsGit, root()],
  async () => {
    await using r = await tempRepo();
    await new Deno.Command("chown", { args: ["-R", "65534:65534", r.dir] }).output();
    await Deno.chmod(r.dir, 0o755);
    const repo = await GitRepo.open(r.dir);
    assertEquals(repo.owner?.uid, 65534);
    // git refuses a repository owned by someone else ("dubious ownership") unless run as them.
    assertEquals(await repo.trackedFiles(), ["a.txt", "dir/b.txt"]);
    const id = repo.spawnAsOwner("id", ["-u"]);
    assertEquals(new TextDecoder().decode((await id.output()).stdout).trim(), "65534");
  },
);
