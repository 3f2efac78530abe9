/**
 * Moving a workspace between a host repository and a guest, with no VM or lock in sight
 * (the service adds those): plan what to send, stream it in, and export the guest's
 * changes as a patch. All guest I/O goes through a {@linkcode GuestShell}.
 *
 * What is sent: git-tracked files present in the working tree, plus untracked files no
 * ignore rule excludes when asked; ignored files never. With `from`, the tree of that
 * commit instead (`git archive`). The files travel as one tar stream (host `tar --null -T -`
 * over the list, or `git archive`, piped into `tar -x` in the guest). In overlay mode
 * the history travels as a `git bundle` of a snapshot commit holding exactly the files
 * sent (parent: HEAD), which becomes the guest's HEAD and the recorded base commit, so
 * a later export holds only what changed in the guest. full_copy mode sends submodule
 * files as plain files and commits the copy in the guest instead.
 *
 * @module
 */

import { BangerError } from "../../host/errors.ts";
import { formatSize } from "../api/size.ts";
import { GitRepo, SNAPSHOT_REF } from "../../host/git/git.ts";
import { beginImport, exportPatch, extractTar, finishFullCopy, finishOverlay } from "./_scripts.ts";
import type { GuestShell, GuestShellResult } from "./_shell.ts";

/** A workspace that cannot be prepared or exported. */
export class WorkspaceError extends BangerError {}

/** How a workspace is laid out in the guest. */
export type WorkspaceMode = "overlay" | "full_copy";

/** What the user asked to send. */
export interface PlanRequest {
  /** Absolute host path inside the repository. */
  hostPath: string;
  /** @default {"overlay"} */
  mode?: WorkspaceMode;
  /** Also send untracked files that are not ignored. @default {false} */
  includeUntracked?: boolean;
  /** Send the tree of this revision instead of the working tree. */
  from?: string;
  /** Branch name in the guest. @default the host's branch, else "banger-workspace" */
  branch?: string;
  /** @default {"/root/repo"} */
  guestPath?: string;
  /** Drop write bits in the guest. @default {false} */
  readonly?: boolean;
}

/** Exactly what a prepare will send and where. */
export interface WorkspacePlan {
  repo: GitRepo;
  mode: WorkspaceMode;
  guestPath: string;
  branch: string;
  readonly: boolean;
  includeUntracked: boolean;
  /** Files sent, relative to the repository root, sorted. */
  files: string[];
  /** Their total size in bytes (regular files; symlinks count their target's length). */
  bytes: number;
  /** The host's HEAD at planning time. */
  hostHead?: string;
  /** The commit whose tree is sent instead of the working tree. */
  from?: string;
}

/** The default guest path. */
export const DEFAULT_GUEST_PATH = "/root/repo";
const DEFAULT_BRANCH = "banger-workspace";
const STAT_BATCH = 64;

/**
 * Inspects the repository at `req.hostPath` and lists what a prepare would send. Reads
 * the host only.
 *
 * @throws {GitError} for a path that is not a usable repository (bare, missing).
 * @throws {WorkspaceError} `failed_precondition` for submodules outside full_copy, or
 *   nothing to send; `invalid_argument` for a bad guest path or branch name.
 */
export async function planWorkspace(
  req: PlanRequest,
  signal?: AbortSignal,
): Promise<WorkspacePlan> {
  const mode = req.mode ?? "overlay";
  const guestPath = checkGuestPath(req.guestPath ?? DEFAULT_GUEST_PATH);
  if (req.from !== undefined && req.includeUntracked) {
    throw new WorkspaceError("Cannot combine --from with --include-untracked", {
      code: "invalid_argument",
      hint: "untracked files exist only in the working tree; drop one of the flags",
    });
  }
  const repo = await GitRepo.open(req.hostPath, signal);
  if (mode === "overlay") {
    const subs = await repo.submodules(signal);
    if (subs.length) {
      throw new WorkspaceError(
        `Cannot prepare an overlay workspace from "${repo.root}": it has submodules (${
          subs.slice(0, 5).join(", ")
        }${subs.length > 5 ? ", …" : ""})`,
        {
          code: "failed_precondition",
          hint: "use --mode full_copy, which copies submodule files as plain files",
        },
      );
    }
  }
  const hostHead = await repo.head(signal);
  const from = req.from !== undefined ? await repo.resolveCommit(req.from, signal) : undefined;
  let files: string[];
  if (from) files = await repo.filesAt(from, signal);
  else {
    files = await repo.trackedFiles({ recurseSubmodules: mode === "full_copy", signal });
    if (req.includeUntracked) files.push(...await repo.untrackedFiles(signal));
  }
  files = [...new Set(files)].sort();
  if (!files.length) {
    throw new WorkspaceError(`Cannot prepare a workspace from "${repo.root}": no files to send`, {
      code: "failed_precondition",
      hint: req.includeUntracked
        ? "add files to the repository"
        : "git add your files, or pass --include-untracked",
    });
  }
  const branch = checkBranch(req.branch ?? (await repo.branch(signal)) ?? DEFAULT_BRANCH);
  return {
    repo,
    mode,
    guestPath,
    branch,
    readonly: req.readonly ?? false,
    includeUntracked: req.includeUntracked ?? false,
    files,
    bytes: from ? 0 : await totalBytes(repo.root, files),
    hostHead,
    from,
  };
}

/** Progress callback: a stage name, a message, and bytes done/total. */
export type ImportProgress = (
  stage: string,
  message: string,
  extra?: { done?: number; total?: number },
) => void;

/**
 * Sends `plan` into the guest: begin (directory, repository, files of `oldBase`
 * removed), the tar stream, then the history (overlay) or a guest commit (full_copy).
 *
 * @returns the base commit a later export diffs against.
 * @throws {WorkspaceError} when a host or guest step fails (with its stderr).
 */
export async function importWorkspace(
  shell: GuestShell,
  plan: WorkspacePlan,
  o: { oldBase?: string; signal?: AbortSignal; progress?: ImportProgress } = {},
): Promise<string> {
  const { repo, guestPath, signal } = { ...plan, signal: o.signal };
  const progress = o.progress ?? (() => {});
  await using stack = new AsyncDisposableStack();
  // The snapshot is built first: if the host side fails, the guest is left untouched.
  const snapshot = plan.mode !== "overlay" ? undefined : stack.use(
    plan.from
      ? await repo.bundleOf(plan.from, signal)
      : await repo.snapshot(plan.files, plan.hostHead, signal),
  );
  progress("workspace_begin", `Preparing ${guestPath} in the guest`);
  check("prepare the guest directory", await shell.run(beginImport(guestPath, o.oldBase ?? "")));
  progress(
    "workspace_copy",
    `Copying ${plan.files.length} files${plan.bytes ? ` (${formatSize(plan.bytes)})` : ""}`,
    { done: 0, total: plan.bytes || undefined },
  );
  const tar = plan.from
    ? repo.spawnAsOwner("git", ["archive", "--format=tar", plan.from], { signal })
    : repo.spawnAsOwner("tar", TAR_ARGS, { stdin: "piped", signal });
  const copied = await streamInto(shell, extractTar(guestPath), tar, {
    feed: plan.from ? undefined : plan.files,
    through: counter(plan.bytes, progress),
    signal,
  });
  check("unpack the files in the guest", copied.res);
  // GNU tar exits 1 when a file changed while it was read: still a consistent copy of it.
  if (copied.code > (plan.from ? 0 : 1)) {
    throw new WorkspaceError(
      `Cannot read the files of "${repo.root}": ${
        plan.from ? "git archive" : "tar"
      } exited ${copied.code}: ${copied.stderr}`,
    );
  }
  let finished: GuestShellResult;
  if (snapshot) {
    progress("workspace_history", "Sending the history");
    const bundle = snapshot.bundle(signal);
    const sent = await streamInto(
      shell,
      finishOverlay(guestPath, plan.branch, SNAPSHOT_REF, plan.readonly),
      bundle,
      { signal },
    );
    check("fetch the history in the guest", sent.res);
    if (sent.code !== 0) {
      throw new WorkspaceError(`Cannot bundle the history of "${repo.root}": ${sent.stderr}`);
    }
    finished = sent.res;
  } else {
    progress("workspace_history", "Committing the copy in the guest");
    finished = await shell.run(finishFullCopy(guestPath, plan.branch, plan.readonly), { signal });
  }
  check("record the base commit in the guest", finished);
  const base = new TextDecoder().decode(finished.stdout).trim().split("\n").at(-1) ?? "";
  if (!/^[0-9a-f]{40,64}$/.test(base)) {
    throw new WorkspaceError(
      `Cannot read the base commit from the guest: got "${base.slice(0, 80)}"`,
    );
  }
  if (snapshot && base !== snapshot.commit) {
    throw new WorkspaceError(
      `Cannot confirm the workspace in the guest: it holds ${base}, expected ${snapshot.commit}`,
    );
  }
  return base;
}

/**
 * The binary patch (`git diff --binary`) from `base` to the guest's working tree,
 * ready for `git apply` in the host repository.
 *
 * @throws {WorkspaceError} when the guest path holds no repository or `base` is unknown.
 */
export async function exportWorkspace(
  shell: GuestShell,
  guestPath: string,
  base: string,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  if (!/^[0-9a-fA-F]{4,64}$/.test(base) && !/^[A-Za-z0-9][A-Za-z0-9._/^~-]*$/.test(base)) {
    throw new WorkspaceError(`Cannot export from base "${base}": it is not a commit id`, {
      code: "invalid_argument",
    });
  }
  const res = await shell.run(exportPatch(checkGuestPath(guestPath), base), {
    signal,
    maxStdout: EXPORT_LIMIT,
  }).catch((err) => {
    if (!(err instanceof BangerError) || err.code !== "too_large") throw err;
    throw new WorkspaceError(
      `Cannot export the changes in "${guestPath}": the patch is larger than ${
        EXPORT_LIMIT >> 20
      } MiB`,
      {
        code: "too_large",
        hint: "copy large files out another way (scp), or delete them in the guest",
      },
    );
  });
  check(`export the changes in "${guestPath}"`, res);
  return res.stdout;
}

/** The largest patch `export` brings back (it travels whole, as one answer). */
export const EXPORT_LIMIT = 128 << 20;

/** `tar` writing an archive of the NUL-separated names on stdin, owned by root. */
const TAR_ARGS = [
  "-c",
  "-f",
  "-",
  "--no-recursion",
  "--owner=0",
  "--group=0",
  "--numeric-owner",
  "--null",
  "--verbatim-files-from",
  "-T",
  "-",
];

/**
 * Runs `argv` in the guest with `child`'s stdout as its stdin (optionally writing `feed`
 * as NUL-separated names to `child`'s stdin), and waits for both. A child the guest
 * stopped reading from is killed, so nothing is left behind.
 */
async function streamInto(
  shell: GuestShell,
  argv: string[],
  child: Deno.ChildProcess,
  o: {
    feed?: readonly string[];
    through?: TransformStream<Uint8Array, Uint8Array>;
    signal?: AbortSignal;
  },
): Promise<{ res: GuestShellResult; code: number; stderr: string }> {
  const stderr = new Response(child.stderr).text();
  const feeding = o.feed ? feedList(child, o.feed) : Promise.resolve();
  // A shell that returns without reading all of stdin must not leave the child blocked
  // on a full pipe: cancelling the rest makes it exit.
  const stdin = o.through ? child.stdout.pipeThrough(o.through) : child.stdout;
  let res: GuestShellResult | undefined;
  try {
    res = await shell.run(argv, { stdin, signal: o.signal });
  } finally {
    if (res?.code !== 0) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
    }
    await feeding;
    await stdin.cancel().catch(() => {});
  }
  const status = await child.status;
  const tail = (await stderr).trim().split("\n").slice(-4).join("; ");
  return { res, code: status.code, stderr: tail };
}

async function feedList(tar: Deno.ChildProcess, files: readonly string[]): Promise<void> {
  const w = tar.stdin.getWriter();
  const enc = new TextEncoder();
  try {
    for (let i = 0; i < files.length; i += 512) {
      await w.write(enc.encode(files.slice(i, i + 512).map((f) => `${f}\0`).join("")));
    }
    await w.close();
  } catch {
    // tar went away; its exit status says why
  }
}

/** Passes bytes through, reporting progress about every MiB. */
function counter(total: number, progress: ImportProgress): TransformStream<Uint8Array, Uint8Array> {
  let done = 0;
  let reported = 0;
  return new TransformStream({
    transform(chunk, controller) {
      done += chunk.length;
      if (done - reported >= 1024 * 1024) {
        reported = done;
        progress("workspace_copy", "Copying files", { done, total: total || undefined });
      }
      controller.enqueue(chunk);
    },
  });
}

function check(what: string, res: GuestShellResult): void {
  if (res.code === 0) return;
  const tail = res.stderr.trim().split("\n").slice(-6).join("; ");
  throw new WorkspaceError(
    `Cannot ${what}: the guest command exited ${res.code}${tail ? `: ${tail}` : ""}`,
    {
      code: "failed_precondition",
    },
  );
}

/**
 * Checks a guest path: absolute, no `.`/`..` parts, not `/`, no control characters.
 *
 * @throws {WorkspaceError} `invalid_argument`.
 */
export function checkGuestPath(path: string): string {
  const bad = (why: string) =>
    new WorkspaceError(`Cannot use guest path "${path}": ${why}`, {
      code: "invalid_argument",
      hint: `use an absolute path such as ${DEFAULT_GUEST_PATH}`,
    });
  if (!path.startsWith("/")) throw bad("it is not absolute");
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(path)) throw bad("it contains control characters");
  const parts = path.split("/").filter((p) => p !== "");
  if (!parts.length) throw bad("it is the root directory");
  if (parts.some((p) => p === "." || p === "..")) throw bad("it contains . or .. parts");
  return "/" + parts.join("/");
}

/**
 * Checks a branch name against git's rules (the common subset).
 *
 * @throws {WorkspaceError} `invalid_argument`.
 */
export function checkBranch(name: string): string {
  const ok = /^[A-Za-z0-9._/+-]+$/.test(name) && !name.startsWith("-") &&
    !name.startsWith("/") && !name.endsWith("/") && !name.endsWith(".") &&
    !name.endsWith(".lock") && !name.includes("..") && !name.includes("//") &&
    !name.split("/").some((p) => p.startsWith(".")) && name !== "HEAD";
  if (!ok) {
    throw new WorkspaceError(`Cannot use branch name "${name}": git does not allow it`, {
      code: "invalid_argument",
      hint: "use letters, digits, and . _ / - (e.g. feature/x)",
    });
  }
  return name;
}

async function totalBytes(root: string, files: readonly string[]): Promise<number> {
  let total = 0;
  for (let i = 0; i < files.length; i += STAT_BATCH) {
    const sizes = await Promise.all(
      files.slice(i, i + STAT_BATCH).map((f) =>
        Deno.lstat(`${root}/${f}`).then((s) => s.size, () => 0)
      ),
    );
    for (const s of sizes) total += s;
  }
  return total;
}
