/**
 * Logs a guest can write without bound (its console in `serial.log`, and through the VMM
 * `vmm.log` and `metrics.json`) are read from the end and capped in place. Capping punches
 * a hole over everything but the last bytes (`fallocate --punch-hole`): the writer's own
 * offset and `O_APPEND` keep working, no byte it writes later is lost, and the disk holds
 * at most the kept tail; only the file's apparent size keeps growing. On a filesystem
 * without hole punching the file is truncated instead (a writer without `O_APPEND` then
 * leaves a sparse gap, which costs no space either).
 *
 * @module
 */

import { run } from "./exec.ts";

/** What a capped log keeps: the last 4 MiB. */
export const LOG_KEEP_BYTES = 4 << 20;
/** When a log is capped: once it holds 8 MiB. */
export const LOG_CAP_BYTES = 8 << 20;
const BLOCK = 4096;

/**
 * At most the last `maxBytes` of the data in `path`, with the zeros of a punched head
 * left out, and the file's size (an offset to read on from).
 *
 * @returns empty bytes and size 0 when the file does not exist.
 */
export async function readTail(
  path: string,
  maxBytes: number,
): Promise<{ bytes: Uint8Array; size: number }> {
  const size = await sizeOf(path);
  const bytes = await readRange(path, Math.max(0, size - maxBytes), maxBytes);
  return { bytes: bytes.subarray(leadingZeros(bytes)), size };
}

/**
 * The bytes of `path` from `offset`, at most `maxBytes` (a follower calls again from the
 * returned offset); an offset past the end, or inside a punched head, starts at the kept
 * data.
 */
export async function readFrom(
  path: string,
  offset: number,
  maxBytes: number,
): Promise<{ bytes: Uint8Array; offset: number }> {
  const size = await sizeOf(path);
  let start = offset > size ? 0 : offset;
  for (;;) {
    const bytes = await readRange(path, start, maxBytes);
    const zeros = leadingZeros(bytes);
    if (zeros < bytes.length || start + bytes.length >= size) {
      return { bytes: bytes.subarray(zeros), offset: start + bytes.length };
    }
    // All hole: the kept data lies near the end, skip ahead instead of reading zeros.
    start = Math.max(start + bytes.length, size - 2 * LOG_CAP_BYTES);
  }
}

/**
 * Caps `path` at `keepBytes` of data once it has more than `capBytes` on disk.
 *
 * @returns whether it capped.
 */
export async function capLog(
  path: string,
  keepBytes = LOG_KEEP_BYTES,
  capBytes = LOG_CAP_BYTES,
): Promise<boolean> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
  const onDisk = (st.blocks ?? Math.ceil(st.size / 512)) * 512;
  if (onDisk <= capBytes) return false;
  const length = Math.floor(Math.max(0, st.size - keepBytes) / BLOCK) * BLOCK;
  if (length === 0) return false;
  try {
    await run("fallocate", ["--punch-hole", "--offset", "0", "--length", String(length), path]);
  } catch {
    await Deno.truncate(path, 0);
  }
  return true;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw err;
  }
}

async function readRange(path: string, start: number, maxBytes: number): Promise<Uint8Array> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return new Uint8Array();
    throw err;
  }
  try {
    await file.seek(start, Deno.SeekMode.Start);
    const buf = new Uint8Array(maxBytes);
    let filled = 0;
    while (filled < maxBytes) {
      const n = await file.read(buf.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return buf.subarray(0, filled);
  } finally {
    file.close();
  }
}

/** How many NUL bytes a punched head left at the start of `bytes`. */
function leadingZeros(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length && bytes[i] === 0) i++;
  return i;
}
