/**
 * Build-then-publish for images and kernels (DESIGN.md invariant 3): artifacts are built
 * in a uniquely named staging directory beside their final home, outside any lock; then,
 * under a short publish lock, the name is re-checked, the staging dir is renamed into
 * place and the row is upserted. A failed or cancelled build leaves nothing behind.
 *
 * @module
 */

/** A staging directory that removes itself on dispose unless it was published. */
export interface StagingDir extends AsyncDisposable {
  /** Absolute path to fill. */
  readonly path: string;
  /**
   * Renames the staging dir to `finalDir`, replacing a leftover directory with no row
   * behind it (the caller re-checked the store under its publish lock).
   */
  publishTo(finalDir: string): Promise<void>;
}

/**
 * Creates `<parent>/.staging-<name>-<random>` (0700).
 *
 * @example
 * ```ts
 * await using staging = await createStaging(imagesDir(layout), "debian-bookworm");
 * await build(staging.path);
 * using _ = await publishLock.acquire(signal);
 * await staging.publishTo(`${imagesDir(layout)}/debian-bookworm`);
 * ```
 */
export async function createStaging(parent: string, name: string): Promise<StagingDir> {
  await Deno.mkdir(parent, { recursive: true, mode: 0o700 });
  const path = await Deno.makeTempDir({ dir: parent, prefix: `.staging-${name}-` });
  let published = false;
  return {
    path,
    async publishTo(finalDir: string) {
      await Deno.remove(finalDir, { recursive: true }).catch((err) => {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      });
      await Deno.chmod(path, 0o755);
      await Deno.rename(path, finalDir);
      published = true;
    },
    async [Symbol.asyncDispose]() {
      if (!published) await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Removes staging directories left by a crashed daemon; returns how many. */
export async function sweepStaging(parent: string): Promise<number> {
  let n = 0;
  try {
    for await (const e of Deno.readDir(parent)) {
      if (e.isDirectory && e.name.startsWith(".staging-")) {
        await Deno.remove(`${parent}/${e.name}`, { recursive: true }).catch(() => {});
        n++;
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return n;
}
