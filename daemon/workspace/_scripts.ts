/**
 * The guest side of workspaces: each step is one `sh -c` script whose inputs arrive as
 * positional parameters (never spliced into the script text), so a path or branch name
 * cannot inject shell. Pure: every function returns an argv for a {@linkcode GuestShell}.
 *
 * A prepare runs {@linkcode beginImport}, then {@linkcode extractTar} with the tar stream,
 * then {@linkcode finishOverlay} with the bundle stream (or {@linkcode finishFullCopy});
 * an export runs {@linkcode exportPatch}. The guest needs `sh`, `git`, `tar`, `xargs`,
 * `find`, `sort`, `rmdir` and `cp`.
 *
 * @module
 */

/** The ref the guest keeps pointing at the base commit of the last prepare. */
export const GUEST_BASE_REF = "refs/banger/base";

/** Identity of the commits banger makes in the guest (full_copy snapshots). */
const IDENTITY = "export GIT_AUTHOR_NAME=banger GIT_AUTHOR_EMAIL=banger@localhost " +
  "GIT_COMMITTER_NAME=banger GIT_COMMITTER_EMAIL=banger@localhost";

/** Drops write bits from everything but `.git` (and symlinks, whose modes mean nothing). */
const READONLY =
  `if [ "$ro" = 1 ]; then find . -path ./.git -prune -o ! -type l -exec chmod a-w {} +; fi`;

function script(name: string, body: string, args: readonly string[]): string[] {
  return ["sh", "-c", `set -eu\n${body}`, `banger-${name}`, ...args];
}

/**
 * Creates the workspace directory and its repository, and removes the files of the
 * previous prepare's base commit (`oldBase`, may be empty), and its directories that end
 * up empty, so files deleted on the host since then do not linger; the tar that follows
 * rewrites everything still there.
 */
export function beginImport(guestPath: string, oldBase: string): string[] {
  return script(
    "begin",
    `p=$1 old=$2
mkdir -p "$p"
cd "$p"
[ -d .git ] || git init -q
if [ -n "$old" ] && git cat-file -e "$old^{commit}" 2>/dev/null; then
  git ls-tree -r -z --name-only "$old" | xargs -0 -r rm -f --
  git ls-tree -r -t -z --name-only "$old" | sort -rz | xargs -0 -r rmdir 2>/dev/null || true
fi`,
    [guestPath, oldBase],
  );
}

/** Unpacks the tar on stdin into the workspace. */
export function extractTar(guestPath: string): string[] {
  return script("extract", `mkdir -p "$1" && tar -x -C "$1"`, [guestPath]);
}

/**
 * Reads the bundle on stdin, fetches its snapshot commit as the base, points `branch` at
 * it and makes it HEAD, and rebuilds the index from it (the working tree came from the
 * tar). Prints the base commit.
 */
export function finishOverlay(
  guestPath: string,
  branch: string,
  bundleRef: string,
  readonly: boolean,
): string[] {
  return script(
    "finish",
    `p=$1 branch=$2 ref=$3 ro=$4
cd "$p"
b=.git/banger-import.bundle
trap 'rm -f "$b"' EXIT
cat > "$b"
git fetch -q "$b" "+$ref:${GUEST_BASE_REF}"
c=$(git rev-parse --verify "${GUEST_BASE_REF}^{commit}")
git update-ref "refs/heads/$branch" "$c"
git symbolic-ref HEAD "refs/heads/$branch"
git reset -q
${READONLY}
echo "$c"`,
    [guestPath, branch, bundleRef, readonly ? "1" : "0"],
  );
}

/**
 * Commits the copied files in the guest (full_copy has no host history), makes that the
 * base, `branch` and HEAD. Prints the base commit.
 */
export function finishFullCopy(guestPath: string, branch: string, readonly: boolean): string[] {
  return script(
    "finish",
    `p=$1 branch=$2 ro=$3
cd "$p"
${IDENTITY}
git add -A
t=$(git write-tree)
c=$(git commit-tree "$t" -m "banger: workspace snapshot")
git update-ref ${GUEST_BASE_REF} "$c"
git update-ref "refs/heads/$branch" "$c"
git symbolic-ref HEAD "refs/heads/$branch"
git reset -q
${READONLY}
echo "$c"`,
    [guestPath, branch, readonly ? "1" : "0"],
  );
}

/**
 * Prints a binary patch of everything that differs between `base` and the working tree
 * — guest commits, edits, new files (ignored ones excepted), deletions — staged in a
 * temporary index inside the git dir (a copy of the real one, for its stat cache) that
 * is removed afterwards; the guest's own index is never written.
 */
export function exportPatch(guestPath: string, base: string): string[] {
  return script(
    "export",
    `p=$1 base=$2
cd "$p"
idx=.git/banger-export-index-$$
trap 'rm -f "$idx" "$idx.lock"' EXIT
if [ -f .git/index ]; then cp .git/index "$idx"; fi
export GIT_INDEX_FILE="$idx"
git add -A
git -c core.quotepath=off diff --cached --binary --full-index --no-color --no-ext-diff \\
  --no-textconv --no-relative --src-prefix=a/ --dst-prefix=b/ "$base" --`,
    [guestPath, base],
  );
}
