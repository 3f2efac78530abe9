/**
 * How e2fsprogs reach a disk image. A disk the guest wrote is hostile input to debugfs,
 * e2fsck and resize2fs, and a parser bug in them must not become guest → host root. So
 * when banger runs as root, they run as a throwaway uid (no groups, no capabilities, no
 * new privileges) that owns nothing else on the host, and reach the image only through a
 * descriptor root opened for them (`/proc/self/fd/3`): the image's inode is lent to that
 * uid for the run and given back after, and the files debugfs copies in are staged in a
 * directory of that uid.
 *
 * Folder-private: used by `host/disk/ext4.ts`.
 *
 * @module
 */

import { run, type RunOptions, type RunResult } from "../os/exec.ts";

/** Throwaway uids are drawn from here: far above any real account's. */
const CONFINED_UID_BASE = 2_000_000_000;

/** One image, reached directly or by a confined uid. */
export interface E2fsAccess {
  /** The uid the tools run as, when confined. */
  readonly uid?: number;
  /** Runs `program args… <image>`. */
  run(program: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
  /** Lets the tools read `path` (a staged file or directory). */
  hand(path: string): Promise<void>;
  /** Gives the image back to its owner. */
  close(): Promise<void>;
}

/**
 * Access to `image` for e2fsprogs: confined when asked and running as root, else direct.
 *
 * @example
 * ```ts
 * const access = await e2fsAccess("/state/vms/abc/work.ext4", true);
 * try { await access.run("e2fsck", ["-fp"]); } finally { await access.close(); }
 * ```
 */
export async function e2fsAccess(image: string, confine: boolean): Promise<E2fsAccess> {
  if (!confine || Deno.uid() !== 0) {
    return {
      run: (program, args, options) => run(program, [...args, image], options),
      hand: () => Promise.resolve(),
      close: () => Promise.resolve(),
    };
  }
  const uid = CONFINED_UID_BASE + crypto.getRandomValues(new Uint32Array(1))[0] % 100_000_000;
  const st = await Deno.stat(image);
  await Deno.chown(image, uid, uid);
  return {
    uid,
    run: (program, args, options) =>
      run("sh", [
        "-c",
        // Root opens the image as fd 3; setpriv drops to the uid and execs the tool on it.
        'exec 3<>"$1"; uid="$2"; shift 2; exec setpriv --reuid="$uid" --regid="$uid" ' +
        '--clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@" /proc/self/fd/3',
        "e2fs",
        image,
        String(uid),
        program,
        ...args,
      ], options),
    hand: (path) => Deno.chown(path, uid, uid),
    close: () => Deno.chown(image, st.uid ?? 0, st.gid ?? 0),
  };
}
