/**
 * Private plumbing of `git.ts`: running `git` (as the repository's owner when we are
 * root), finding that owner, and decoding NUL-separated lists.
 *
 * @module
 */

import { BangerError } from "../errors.ts";
import { collectOutput } from "../os/exec.ts";

/** A git repository that cannot be used, or a git command that failed. */
export class GitError extends BangerError {}

/** Who runs git: the repository owner, with their home (for their global ignore rules). */
export interface Owner {
  uid: number;
  gid: number;
  home: string;
}

/** Options of `GitRepo.run`. */
export interface GitRunOptions {
  /** Bytes or text for stdin. */
  stdin?: Uint8Array | string;
  /** Extra environment. */
  env?: Record<string, string>;
  /** Stops git when aborted. */
  signal?: AbortSignal;
  /** Exit codes that are not failures. @default {[0]} */
  okCodes?: number[];
}

/** Environment for every git call: no prompts, stable messages. */
export const BASE_ENV = { GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" };
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Runs git in `cwd` as `owner` (when set); a non-zero exit is returned, not thrown. */
export async function gitRaw(
  args: readonly string[],
  o: GitRunOptions & { cwd: string; owner: Owner | undefined },
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("git", {
      args: [...args],
      cwd: o.cwd,
      env: { ...BASE_ENV, ...(o.owner ? { HOME: o.owner.home } : {}), ...o.env },
      stdin: o.stdin !== undefined ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      signal: o.signal,
      ...(o.owner ? { uid: o.owner.uid, gid: o.owner.gid } : {}),
    }).spawn();
  } catch (err) {
    throw new GitError(`Cannot run git: ${err instanceof Error ? err.message : String(err)}`, {
      code: "failed_precondition",
      hint: "install git (apt-get install git)",
      cause: err,
    });
  }
  const out = await collectOutput(child, o.stdin);
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

/** The owner to run git as: the file's owner when we are root and it is someone else. */
export async function ownerOf(info: Deno.FileInfo): Promise<Owner | undefined> {
  const me = Deno.uid();
  if (me !== 0 || info.uid === null || info.uid === 0) return undefined;
  const gid = info.gid ?? info.uid;
  let home = "/";
  try {
    const passwd = await Deno.readTextFile("/etc/passwd");
    const line = passwd.split("\n").find((l) => l.split(":")[2] === String(info.uid));
    home = line?.split(":")[5] || "/";
  } catch {
    // no passwd entry: git works without a home (no global config)
  }
  return { uid: info.uid, gid, home };
}

/** UTF-8 text of git output. */
export function decode(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** Splits NUL-terminated output. @throws {GitError} for a name that is not UTF-8. */
export function nulList(bytes: Uint8Array, root: string): string[] {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch (err) {
    throw new GitError(`Cannot list the files of "${root}": a file name is not valid UTF-8`, {
      code: "failed_precondition",
      hint: "rename the file (git ls-files | grep -v '^[[:print:]]*$' finds it)",
      cause: err,
    });
  }
  return text.split("\0").filter((s) => s !== "");
}
