/**
 * Kernels: pull from the catalog (a bundle, or Debian's cloud kernel built on the host),
 * import from a directory, list, show, remove. Pulls of one name coalesce under a
 * per-name lock; a waiter re-checks after acquiring and takes a peer's result as success
 * (DESIGN.md invariant 2). Removal takes the same lock and refuses while an image uses
 * the kernel.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { fetchBundle } from "../../catalog/bundle.ts";
import type { Catalogs, KernelEntry } from "../../catalog/catalog_index.ts";
import { buildKernel } from "../../catalog/kernel/kernel_build.ts";
import { writeJsonAtomic } from "../../host/os/atomic_file.ts";
import { BangerError } from "../../host/errors.ts";
import { buildCacheDir, kernelsDir, type Layout } from "../../host/layout.ts";
import type { Store } from "../../store/db.ts";
import {
  deleteKernel,
  getKernel,
  imagesUsingKernel,
  type KernelRecord,
  listKernels,
  upsertKernel,
} from "../../store/kernels.ts";
import { KeyedLock, Mutex } from "../locks.ts";
import type { OpContext } from "../rpc/server.ts";
import { createStaging } from "./staging.ts";

/** A kernel operation that cannot be done. */
export class KernelError extends BangerError {}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** What the service needs. */
export interface KernelServiceDeps {
  layout: Layout;
  store: Store;
  catalogs: (signal?: AbortSignal) => Promise<Catalogs>;
}

/** Owns the kernels directory, the kernel rows and their locks. */
export class KernelService {
  // pull[kernel:name]: taken before any other lock, never while holding vm/create/publish.
  readonly #pullLocks = new KeyedLock("kernel pull");
  // guards the rename into kernels/<name> + the row upsert; a leaf lock.
  readonly #publish = new Mutex("kernel publish");
  readonly #deps: KernelServiceDeps;

  constructor(deps: KernelServiceDeps) {
    this.#deps = deps;
  }

  /** The kernel named `name`. @throws {KernelError} `not_found`. */
  get(name: string): KernelRecord {
    const k = getKernel(this.#deps.store, name);
    if (!k) {
      throw new KernelError(`Cannot find kernel "${name}"`, {
        code: "not_found",
        hint: "banger kernel list --available",
      });
    }
    return k;
  }

  /** Every published kernel. */
  list(): KernelRecord[] {
    return listKernels(this.#deps.store);
  }

  /** Names of images using each kernel. */
  usedBy(name: string): string[] {
    return this.#deps.store.read((db) => imagesUsingKernel(db, name));
  }

  /** Catalog kernels and whether each is pulled. */
  async available(
    signal?: AbortSignal,
  ): Promise<{ name: string; description: string; pulled: boolean }[]> {
    return (await this.#deps.catalogs(signal)).kernels.map((e) => ({
      name: e.name,
      description: e.description,
      pulled: getKernel(this.#deps.store, e.name) !== undefined,
    }));
  }

  /**
   * The kernel `name`, pulled from the catalog first when missing (auto-pull).
   *
   * @throws {KernelError} `not_found` when it is neither local nor in the catalog.
   */
  async resolve(name: string, ctx: OpContext): Promise<KernelRecord> {
    return getKernel(this.#deps.store, name) ?? (await this.pull(name, ctx)).kernel;
  }

  /**
   * Pulls `name` from the catalog. A pull that finds the kernel already published (by
   * an earlier call or a peer it waited for) returns it with `already: true`.
   */
  async pull(name: string, ctx: OpContext): Promise<{ kernel: KernelRecord; already: boolean }> {
    const existing = getKernel(this.#deps.store, name);
    if (existing) return { kernel: existing, already: true };
    const entry = (await this.#deps.catalogs(ctx.signal)).kernels.find((k) => k.name === name);
    if (!entry) {
      throw new KernelError(`Cannot pull kernel "${name}": it is not in the catalog`, {
        code: "not_found",
        hint: "banger kernel list --available, or: banger kernel import <name> --from DIR",
      });
    }
    using _pull = await this.#pullLocks.acquire(name, ctx.signal);
    const peer = getKernel(this.#deps.store, name);
    if (peer) return { kernel: peer, already: true };
    await using staging = await createStaging(kernelsDir(this.#deps.layout), name);
    const built = await this.#build(entry, staging.path, ctx);
    return { kernel: await this.#publishKernel(name, staging, built, ctx), already: false };
  }

  /**
   * Publishes a kernel from a directory holding `vmlinux` (and optionally `initrd.img`).
   *
   * @throws {KernelError} `conflict` when the name is taken, `invalid_argument` when the
   *   directory lacks a usable `vmlinux`.
   */
  async import(name: string, from: string, ctx: OpContext): Promise<KernelRecord> {
    checkName(name);
    using _pull = await this.#pullLocks.acquire(name, ctx.signal);
    if (getKernel(this.#deps.store, name)) {
      throw new KernelError(`Cannot import kernel "${name}": a kernel with that name exists`, {
        code: "conflict",
        hint: `banger kernel rm ${name}`,
      });
    }
    await using staging = await createStaging(kernelsDir(this.#deps.layout), name);
    const vmlinux = await readKernelImage(`${from}/vmlinux`);
    await Deno.writeFile(`${staging.path}/vmlinux`, vmlinux, { mode: 0o644 });
    let initrd = false;
    try {
      await Deno.copyFile(`${from}/initrd.img`, `${staging.path}/initrd.img`);
      initrd = true;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    const built: Built = {
      version: await readVersionHint(from),
      sha256: sha256(vmlinux),
      initrd,
      source: { kind: "import", from },
    };
    return await this.#publishKernel(name, staging, built, ctx);
  }

  /**
   * Removes a kernel. Takes the kernel's pull lock, so it never races a pull of the same
   * name. @throws {KernelError} `conflict` while an image uses it.
   */
  async remove(name: string, ctx: OpContext): Promise<void> {
    using _pull = await this.#pullLocks.acquire(name, ctx.signal);
    const k = this.get(name);
    {
      using _pub = await this.#publish.acquire(ctx.signal);
      this.#deps.store.write((db) => {
        const users = imagesUsingKernel(db, name);
        if (users.length) {
          throw new KernelError(
            `Cannot remove kernel "${name}": used by image${users.length > 1 ? "s" : ""} ${
              users.join(", ")
            }`,
            { code: "conflict", hint: `banger image delete ${users[0]}` },
          );
        }
        deleteKernel(db, name);
      });
    }
    await Deno.remove(k.dir, { recursive: true }).catch(() => {});
    ctx.log.info("kernel removed", { kernel: name });
  }

  async #build(entry: KernelEntry, dir: string, ctx: OpContext): Promise<Built> {
    if (entry.bundle) {
      ctx.progress("download", `Downloading kernel ${entry.name}`, {
        done: 0,
        total: entry.bundle.size,
      });
      const got = await fetchBundle({
        ...entry.bundle,
        kind: "kernel",
        destDir: dir,
        signal: ctx.signal,
        onProgress: (p) =>
          ctx.progress("download", `Downloading kernel ${entry.name}`, {
            done: p.done,
            total: p.total,
          }),
      });
      const vmlinux = await readKernelImage(`${dir}/vmlinux`);
      return {
        version: entry.name,
        sha256: sha256(vmlinux),
        initrd: got.files.includes("initrd.img"),
        source: { kind: "catalog", url: entry.bundle.url, sha256: entry.bundle.sha256 },
      };
    }
    if (!entry.debian_package) {
      throw new KernelError(`Cannot pull kernel "${entry.name}": its catalog entry has no source`);
    }
    ctx.progress("build", `Building kernel ${entry.name} from Debian's ${entry.debian_package}`);
    const m = await buildKernel({
      name: entry.name,
      outDir: dir,
      cacheDir: buildCacheDir(this.#deps.layout),
      packageName: entry.debian_package,
      signal: ctx.signal,
    });
    return {
      version: m.version,
      sha256: m.sha256,
      initrd: true,
      source: { kind: "debian", package: m.source.package, version: m.source.version },
      manifestWritten: true,
    };
  }

  async #publishKernel(
    name: string,
    staging: { path: string; publishTo(dir: string): Promise<void> },
    built: Built,
    ctx: OpContext,
  ): Promise<KernelRecord> {
    const dir = `${kernelsDir(this.#deps.layout)}/${name}`;
    const record: KernelRecord = {
      name,
      dir,
      vmlinux: `${dir}/vmlinux`,
      ...(built.initrd ? { initrd: `${dir}/initrd.img` } : {}),
      version: built.version,
      arch: "x86_64",
      sha256: built.sha256,
      source: built.source,
      createdAt: new Date().toISOString(),
    };
    if (!built.manifestWritten) {
      await writeJsonAtomic(`${staging.path}/manifest.json`, {
        name,
        version: record.version,
        arch: record.arch,
        sha256: record.sha256,
        source: record.source,
        created_at: record.createdAt,
      }, { mode: 0o644 });
    }
    using _pub = await this.#publish.acquire(ctx.signal);
    const peer = getKernel(this.#deps.store, name);
    if (peer) return peer;
    await staging.publishTo(dir);
    this.#deps.store.write((db) => upsertKernel(db, record));
    ctx.log.info("kernel published", { kernel: name, version: record.version });
    return record;
  }
}

interface Built {
  version: string;
  sha256: string;
  initrd: boolean;
  source: KernelRecord["source"];
  manifestWritten?: boolean;
}

function checkName(name: string): void {
  if (!NAME.test(name)) {
    throw new KernelError(`Cannot use kernel name "${name}": use 1–63 of a-z 0-9 . _ -`, {
      code: "invalid_argument",
    });
  }
}

/** Reads a kernel image and checks it is an ELF (Firecracker) or a bzImage (QEMU). */
async function readKernelImage(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    throw new KernelError(`Cannot read kernel image "${path}": ${(err as Error).message}`, {
      code: "invalid_argument",
    });
  }
  const elf = bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
  const bz = bytes.length > 0x206 &&
    new TextDecoder().decode(bytes.subarray(0x202, 0x206)) === "HdrS";
  if (!elf && !bz) {
    throw new KernelError(
      `Cannot use kernel image "${path}": it is neither an ELF vmlinux nor a bzImage`,
      {
        code: "invalid_argument",
      },
    );
  }
  return bytes;
}

async function readVersionHint(dir: string): Promise<string> {
  try {
    const m = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
    if (typeof m.version === "string") return m.version;
  } catch {
    // no manifest: the version is unknown
  }
  return "unknown";
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
