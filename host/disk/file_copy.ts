/**
 * Copying an image file for a per-VM root disk: a reflink (`FICLONE`) when the
 * filesystem shares extents, otherwise a sparse copy that walks `SEEK_DATA`/`SEEK_HOLE`
 * and never reads a hole, always through a sibling temp file and a rename.
 * Folder-private; `host/disk/rootdisk.ts` uses it.
 *
 * @module
 */

import {
  because,
  Errno,
  Fd,
  LibcError,
  O_CREAT,
  O_EXCL,
  O_NOFOLLOW,
  O_RDONLY,
  O_WRONLY,
  SEEK_DATA,
  SEEK_END,
  SEEK_HOLE,
} from "../os/libc.ts";

// <linux/fs.h>
/** Share `src`'s extents with the destination: `ioctl(dst, FICLONE, src_fd)`. */
export const FICLONE = 0x40049409;

/** Clones a small temp file inside `dir`; `undefined` on success, else why it failed. */
export async function probeReflink(dir: string): Promise<string | undefined> {
  const stem = `${dir}/.banger-reflink-probe-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeFile(`${stem}.src`, new Uint8Array(4096).fill(1), { createNew: true });
    using src = Fd.open(`${stem}.src`, O_RDONLY, "open reflink probe");
    using dst = Fd.open(`${stem}.dst`, O_WRONLY | O_CREAT | O_EXCL, "create reflink probe");
    dst.ioctlInt(FICLONE, src.fd, "clone into");
    return undefined;
  } catch (err) {
    return err instanceof LibcError ? err.reason : because(err);
  } finally {
    await Deno.remove(`${stem}.src`).catch(() => {});
    await Deno.remove(`${stem}.dst`).catch(() => {});
  }
}

/** Copies `src` to `dst` through a sibling temp file and a rename. */
export async function copyImage(
  src: string,
  dst: string,
  strategy: "reflink" | "sparse-copy" | undefined,
): Promise<"reflink" | "sparse-copy"> {
  const tmp = `${dst}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    let used: "reflink" | "sparse-copy" = "sparse-copy";
    {
      using from = Fd.open(src, O_RDONLY | O_NOFOLLOW, "open base image");
      using to = Fd.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, "create", 0o600);
      if (strategy !== "sparse-copy" && tryClone(from, to, strategy === "reflink")) {
        used = "reflink";
      } else {
        await sparseCopy(from, to);
      }
      to.fsync("flush copy");
    }
    await Deno.rename(tmp, dst);
    return used;
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}

/** FICLONE; `false` when the filesystem cannot (unless `required`). */
function tryClone(from: Fd, to: Fd, required: boolean): boolean {
  try {
    to.ioctlInt(FICLONE, from.fd, "reflink into");
    return true;
  } catch (err) {
    const unsupported = err instanceof LibcError && NO_REFLINK.includes(err.errno);
    if (unsupported && !required) return false;
    throw err;
  }
}

const COPY_CHUNK = 64 * 1024 * 1024;
/** FICLONE errors meaning "this filesystem (pair) cannot share extents". */
const NO_REFLINK: readonly number[] = [Errno.EOPNOTSUPP, Errno.EXDEV, Errno.EINVAL, Errno.ENOTTY];
/** copy_file_range errors meaning "copy through userspace instead". */
const NO_KERNEL_COPY: readonly number[] = [
  Errno.EXDEV,
  Errno.EINVAL,
  Errno.ENOSYS,
  Errno.EOPNOTSUPP,
];

/**
 * Copies only the data extents of `from` (SEEK_DATA/SEEK_HOLE) into `to`, sized like
 * `from`, so holes stay holes and are never read. Yields to the event loop between
 * chunks so a large copy does not stall the daemon.
 */
export async function sparseCopy(from: Fd, to: Fd): Promise<void> {
  const size = from.seek(0, SEEK_END, "measure") ?? 0;
  to.truncate(size, "size copy");
  let offset = 0;
  let kernelCopy = true;
  while (offset < size) {
    const data = from.seek(offset, SEEK_DATA);
    if (data === undefined) break; // only a hole remains
    const hole = from.seek(data, SEEK_HOLE) ?? size;
    for (let at = data; at < hole;) {
      const len = Math.min(COPY_CHUNK, hole - at);
      if (kernelCopy) {
        try {
          const n = to.copyRangeFrom(from, at, at, len);
          if (n === 0) break;
          at += n;
          await yieldToLoop();
          continue;
        } catch (err) {
          const fallback = err instanceof LibcError && NO_KERNEL_COPY.includes(err.errno);
          if (!fallback) throw err;
          kernelCopy = false;
        }
      }
      at += copyByReading(from, to, at, len);
      await yieldToLoop();
    }
    offset = hole;
  }
}

function copyByReading(from: Fd, to: Fd, at: number, len: number): number {
  const buf = new Uint8Array(Math.min(len, 4 * 1024 * 1024));
  let done = 0;
  while (done < len) {
    const n = from.pread(buf.subarray(0, Math.min(buf.length, len - done)), at + done);
    if (n === 0) break;
    to.pwriteAll(buf.subarray(0, n), at + done);
    done += n;
  }
  return done;
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
