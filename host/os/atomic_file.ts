/**
 * Replaces shared files without ever exposing a torn one (DESIGN.md invariant 4).
 *
 * @module
 */

/** Options for {@linkcode writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** Permission bits of the new file. @default {0o600} */
  mode?: number;
}

let counter = 0;

/**
 * Writes `data` to a uniquely named sibling of `path`, fsyncs it, then renames it over
 * `path`. Readers see either the old inode or the new one, never a partial file; two
 * concurrent writers never share a temp file.
 *
 * @example
 * ```ts
 * await writeFileAtomic("/state/vms/abc/handles.json", JSON.stringify(handles));
 * ```
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const tmp = `${path}.tmp-${Deno.pid}-${Date.now()}-${counter++}`;
  try {
    using file = await Deno.open(tmp, {
      write: true,
      createNew: true,
      mode: options.mode ?? 0o600,
    });
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  try {
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  // The rename lives in the directory: sync it too, or a crash can bring back the old file.
  const slash = path.lastIndexOf("/");
  using dir = await Deno.open(slash > 0 ? path.slice(0, slash) : slash === 0 ? "/" : ".", {
    read: true,
  });
  await dir.sync();
}

/** {@linkcode writeFileAtomic} of a value serialised as pretty JSON. */
export function writeJsonAtomic(
  path: string,
  value: unknown,
  options: AtomicWriteOptions = {},
): Promise<void> {
  return writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n", options);
}
