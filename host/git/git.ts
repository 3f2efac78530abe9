/**
 * Reading a git repository on the host, for workspaces: where its root and git dir are,
 * whether it is bare or has submodules, which files are tracked and which are untracked
 * but not ignored, HEAD and the branch; and the snapshot of exactly the files a workspace
 * sends, as a commit in a throwaway object store streamed out as a `git bundle`.
 *
 * Every `git` (and the caller's `tar`, via {@linkcode GitRepo.spawnAsOwner}) runs as the
 * owner of the repository when we are root: git refuses repositories of another owner
 * ("dubious ownership"), a repository's own config can run commands (filters,
 * fsmonitor), and files written into its git dir must stay the owner's. Lists use `-z`,
 * so any file name survives; names that are not UTF-8 are refused.
 *
 * The snapshot never touches the repository's index, refs or object store: it uses a
 * temporary bare repository inside the git dir (`banger-tmp-<random>`) for its index
 * and new objects, borrowing the repository's objects as alternates.
 *
 * @module
 */

import { ExecError } from "../errors.ts";
import {
  BASE_ENV,
  decode,
  GitError,
  gitRaw,
  type GitRunOptions,
  nulList,
  type Owner,
  ownerOf,
} from "./_git_exec.ts";

export { GitError, type GitRunOptions } from "./_git_exec.ts";

/** Identity stamped on snapshot commits, so they never depend on the user's config. */
const SNAPSHOT_IDENTITY = {
  GIT_AUTHOR_NAME: "banger",
  GIT_AUTHOR_EMAIL: "banger@localhost",
  GIT_COMMITTER_NAME: "banger",
  GIT_COMMITTER_EMAIL: "banger@localhost",
};

/**
 * A non-bare git repository on the host.
 *
 * @example
 * ```ts
 * const repo = await GitRepo.open("./my-project");
 * const files = await repo.trackedFiles();
 * ```
 */
export class GitRepo {
  private constructor(
    /** The top of the working tree. */
    readonly root: string,
    /** The (absolute) git dir; a linked worktree's own one. */
    readonly gitDir: string,
    /** The object store shared by all worktrees. */
    readonly objectsDir: string,
    readonly owner: Owner | undefined,
  ) {}

  /**
   * Opens the repository containing `path`.
   *
   * @throws {GitError} `not_found` when `path` does not exist, `failed_precondition` when it
   *   is not in a git repository or the repository is bare.
   */
  static async open(path: string, signal?: AbortSignal): Promise<GitRepo> {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (err) {
      throw new GitError(`Cannot open "${path}": it does not exist`, {
        code: "not_found",
        cause: err,
      });
    }
    const dir = info.isDirectory ? path : path.replace(/\/[^/]*$/, "") || "/";
    const owner = await ownerOf(info);
    const probe = await gitRaw(
      [
        "rev-parse",
        "--is-bare-repository",
        "--absolute-git-dir",
        "--path-format=absolute",
        "--git-common-dir",
      ],
      { cwd: dir, owner, signal },
    );
    if (probe.code !== 0) {
      throw new GitError(`Cannot use "${path}" as a workspace: it is not inside a git repository`, {
        code: "failed_precondition",
        hint: `run "git init" there and commit, or pass the path of a git checkout`,
      });
    }
    const [bare, gitDir, common] = decode(probe.stdout).trim().split("\n");
    if (bare === "true") {
      throw new GitError(
        `Cannot use "${path}" as a workspace: it is a bare repository (it has no working tree)`,
        {
          code: "failed_precondition",
          hint:
            `clone it and use the clone: git clone ${path} repo && banger vm workspace prepare <vm> ./repo`,
        },
      );
    }
    const top = await gitRaw(["rev-parse", "--show-toplevel"], { cwd: dir, owner, signal });
    const root = decode(top.stdout).trim();
    if (top.code !== 0 || !root) {
      throw new GitError(`Cannot use "${path}" as a workspace: it is inside a git dir`, {
        code: "failed_precondition",
        hint: "pass the working tree's path",
      });
    }
    return new GitRepo(root, gitDir, `${common}/objects`, owner);
  }

  /**
   * Runs `git -C <root> args` as the owner and returns its output.
   *
   * @throws {GitError} when git exits with a code outside `okCodes`.
   */
  async run(
    args: readonly string[],
    o: GitRunOptions = {},
  ): Promise<{ code: number; stdout: Uint8Array }> {
    const out = await gitRaw(args, { cwd: this.root, owner: this.owner, ...o });
    if (!(o.okCodes ?? [0]).includes(out.code)) {
      const failure = new ExecError({
        program: "git",
        args,
        exitCode: out.code,
        signal: null,
        timedOut: false,
        aborted: o.signal?.aborted ?? false,
        stderrTail: out.stderr.trim().split("\n").slice(-8).join("\n"),
      });
      throw new GitError(`Cannot run "git ${args[0]}" in "${this.root}": ${failure.message}`, {
        cause: failure,
      });
    }
    return { code: out.code, stdout: out.stdout };
  }

  /** The commit HEAD points at; `undefined` in a repository without commits. */
  async head(signal?: AbortSignal): Promise<string | undefined> {
    const out = await this.run(["rev-parse", "-q", "--verify", "HEAD^{commit}"], {
      signal,
      okCodes: [0, 1, 128],
    });
    return out.code === 0 ? decode(out.stdout).trim() : undefined;
  }

  /** The checked-out branch's short name; `undefined` on a detached HEAD. */
  async branch(signal?: AbortSignal): Promise<string | undefined> {
    const out = await this.run(["symbolic-ref", "-q", "--short", "HEAD"], {
      signal,
      okCodes: [0, 1],
    });
    return out.code === 0 ? decode(out.stdout).trim() : undefined;
  }

  /**
   * The full commit id `rev` names.
   *
   * @throws {GitError} `invalid_argument` when it names no commit.
   */
  async resolveCommit(rev: string, signal?: AbortSignal): Promise<string> {
    if (rev.startsWith("-") || /[\0\n]/.test(rev)) {
      throw new GitError(`Cannot resolve revision "${rev}": it is not a revision`, {
        code: "invalid_argument",
      });
    }
    const out = await this.run(["rev-parse", "-q", "--verify", `${rev}^{commit}`], {
      signal,
      okCodes: [0, 1, 128],
    });
    if (out.code !== 0) {
      throw new GitError(`Cannot resolve revision "${rev}" in "${this.root}": no such commit`, {
        code: "invalid_argument",
        hint: `git -C ${this.root} log --oneline`,
      });
    }
    return decode(out.stdout).trim();
  }

  /** Paths of submodules (gitlinks) in the index, sorted. */
  async submodules(signal?: AbortSignal): Promise<string[]> {
    const out = await this.run(["ls-files", "-z", "--stage"], { signal });
    return nulList(out.stdout, this.root)
      .filter((line) => line.startsWith("160000 "))
      .map((line) => line.slice(line.indexOf("\t") + 1));
  }

  /**
   * Tracked files present in the working tree (`git ls-files -z` without the ones
   * deleted there), relative to the root. With `recurseSubmodules`, files of checked-out
   * submodules too, in place of their gitlinks.
   */
  async trackedFiles(
    o: { recurseSubmodules?: boolean; signal?: AbortSignal } = {},
  ): Promise<string[]> {
    const recurse = o.recurseSubmodules ? ["--recurse-submodules"] : [];
    const cached = await this.run(["ls-files", "-z", ...recurse], { signal: o.signal });
    const deleted = new Set(
      nulList(
        (await this.run(["ls-files", "-z", "--deleted"], { signal: o.signal })).stdout,
        this.root,
      ),
    );
    const files = nulList(cached.stdout, this.root).filter((f) => !deleted.has(f));
    if (!o.recurseSubmodules) return files;
    // A submodule that is not checked out stays a gitlink: an empty directory.
    const links = new Set(await this.submodules(o.signal));
    return files.filter((f) => !links.has(f));
  }

  /** Untracked files that no ignore rule excludes, relative to the root. */
  async untrackedFiles(signal?: AbortSignal): Promise<string[]> {
    const out = await this.run(["ls-files", "-z", "--others", "--exclude-standard"], { signal });
    return nulList(out.stdout, this.root);
  }

  /** Files (blobs and symlinks) in the tree of commit `rev`, relative to the root. */
  async filesAt(rev: string, signal?: AbortSignal): Promise<string[]> {
    const out = await this.run(["ls-tree", "-r", "-z", "--name-only", rev], { signal });
    return nulList(out.stdout, this.root);
  }

  /**
   * Commits exactly `files` of the working tree (as `git add` would stage them) on top of
   * `parent`, without touching the repository's index, refs or objects; returns a
   * {@linkcode Snapshot} to stream as a bundle. When the files equal `parent`'s tree the
   * snapshot is `parent` itself.
   *
   * @throws {GitError} when a file cannot be read or git fails.
   */
  async snapshot(
    files: readonly string[],
    parent: string | undefined,
    signal?: AbortSignal,
  ): Promise<Snapshot> {
    const tmp = await this.#tempRepo(signal);
    try {
      const env = {
        GIT_INDEX_FILE: `${tmp}/index`,
        GIT_OBJECT_DIRECTORY: `${tmp}/objects`,
        GIT_ALTERNATE_OBJECT_DIRECTORIES: this.objectsDir,
      };
      const list = files.map((f) => `${f}\0`).join("");
      await this.run(["update-index", "--add", "-z", "--stdin"], { stdin: list, env, signal });
      const tree = decode((await this.run(["write-tree"], { env, signal })).stdout).trim();
      let commit = parent;
      const parentTree = parent
        ? decode((await this.run(["rev-parse", `${parent}^{tree}`], { signal })).stdout).trim()
        : undefined;
      if (tree !== parentTree) {
        const args = ["commit-tree", tree, ...(parent ? ["-p", parent] : [])];
        const out = await this.run([...args, "-m", "banger: workspace snapshot"], {
          env: { ...env, ...SNAPSHOT_IDENTITY },
          signal,
        });
        commit = decode(out.stdout).trim();
      }
      if (!commit) throw new GitError(`Cannot snapshot "${this.root}": it has no files to commit`);
      await this.#tmpGit(tmp, ["update-ref", SNAPSHOT_REF, commit], signal);
      return new Snapshot(this, tmp, commit, tree);
    } catch (err) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /** A bundle of `commit` and its history, for a commit that already exists. */
  async bundleOf(commit: string, signal?: AbortSignal): Promise<Snapshot> {
    const tmp = await this.#tempRepo(signal);
    try {
      await this.#tmpGit(tmp, ["update-ref", SNAPSHOT_REF, commit], signal);
      const tree = decode((await this.run(["rev-parse", `${commit}^{tree}`], { signal })).stdout)
        .trim();
      return new Snapshot(this, tmp, commit, tree);
    } catch (err) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /**
   * Starts `program` as the repository's owner in its root, with stdout piped (for
   * `tar` and `git archive` streams).
   */
  spawnAsOwner(
    program: string,
    args: readonly string[],
    o: { env?: Record<string, string>; signal?: AbortSignal; stdin?: "piped" | "null" } = {},
  ): Deno.ChildProcess {
    return new Deno.Command(program, {
      args: [...args],
      cwd: this.root,
      env: { ...BASE_ENV, ...this.#ownerEnv(), ...o.env },
      stdin: o.stdin ?? "null",
      stdout: "piped",
      stderr: "piped",
      signal: o.signal,
      ...(this.owner ? { uid: this.owner.uid, gid: this.owner.gid } : {}),
    }).spawn();
  }

  #ownerEnv(): Record<string, string> {
    return this.owner ? { HOME: this.owner.home } : {};
  }

  async #tempRepo(signal?: AbortSignal): Promise<string> {
    const rand = crypto.randomUUID().slice(0, 8);
    const tmp = `${this.gitDir}/banger-tmp-${rand}`;
    await this.run(["init", "-q", "--bare", tmp], { signal });
    return tmp;
  }

  async #tmpGit(tmp: string, args: string[], signal?: AbortSignal): Promise<Uint8Array> {
    const out = await this.run([`--git-dir=${tmp}`, ...args], {
      env: { GIT_ALTERNATE_OBJECT_DIRECTORIES: this.objectsDir },
      signal,
    });
    return out.stdout;
  }
}

/** The ref a snapshot bundle carries. */
export const SNAPSHOT_REF = "refs/heads/banger-snapshot";

/**
 * A snapshot commit held in a temporary object store inside the git dir; dispose it to
 * remove that store.
 */
export class Snapshot implements AsyncDisposable {
  constructor(
    readonly repo: GitRepo,
    /** The temporary bare repository. */
    readonly tempDir: string,
    /** The snapshot commit. */
    readonly commit: string,
    /** Its tree. */
    readonly tree: string,
  ) {}

  /**
   * Starts `git bundle create -` of the snapshot and its history; read its stdout.
   * Carries {@linkcode SNAPSHOT_REF}.
   */
  bundle(signal?: AbortSignal): Deno.ChildProcess {
    return this.repo.spawnAsOwner(
      "git",
      [`--git-dir=${this.tempDir}`, "bundle", "create", "-", SNAPSHOT_REF],
      { env: { GIT_ALTERNATE_OBJECT_DIRECTORIES: this.repo.objectsDir }, signal },
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.tempDir, { recursive: true }).catch(() => {});
  }
}
