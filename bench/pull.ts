/**
 * `image pull` of a ~30 MB, three-layer image from a local registry, against the same
 * work done with stock tools in the same run: `skopeo copy` + `umoci unpack` +
 * `mkfs.ext4 -d` (goal: ratio ≤ 1.0). Both start cold (no blob cache).
 *
 * @module
 */

import zlib from "node:zlib";
import { BlobCache } from "../catalog/oci/blob_cache.ts";
import { ImageService } from "../daemon/image/image_service.ts";
import { KernelService } from "../daemon/image/kernel_service.ts";
import { Logger } from "../daemon/logger.ts";
import { InProcessOps } from "../host/privileged/in_process_ops.ts";
import { ociBlobsDir, resolveLayout, storePath } from "../host/layout.ts";
import { Store } from "../store/db.ts";
import { pushRaw, startRegistry, writeImage } from "../tests/fixtures/registry.ts";
import { tarBytes } from "../tests/fixtures/tar_writer.ts";
import { heading, median, ms, row } from "./_stats.ts";

const RUNS = 3;

function layer(seed: number, files: number, size: number): Uint8Array {
  const entries = [];
  for (let i = 0; i < files; i++) {
    const content = new Uint8Array(size);
    crypto.getRandomValues(content.subarray(0, Math.min(size, 65536)));
    for (let o = 65536; o < size; o += 65536) content.copyWithin(o, 0, Math.min(65536, size - o));
    content[0] = seed;
    entries.push({ path: `layer${seed}/file${i}.bin`, content });
  }
  return tarBytes([{ path: `layer${seed}/`, type: "dir" }, ...entries]);
}

async function bangerPull(ref: string): Promise<number> {
  const home = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgp-" });
  const layout = resolveLayout({ BANGER_HOME: home }, 0, false);
  for (const d of [layout.stateDir, layout.cacheDir, layout.runtimeDir]) {
    await Deno.mkdir(d, { recursive: true });
  }
  const store = Store.open(storePath(layout));
  try {
    const kdir = await Deno.makeTempDir();
    await Deno.writeFile(`${kdir}/vmlinux`, new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]));
    const catalogs = () => Promise.resolve({ images: [], kernels: [] });
    const kernels = new KernelService({ layout, store, catalogs });
    const ctx = {
      opId: "op-bench",
      signal: new AbortController().signal,
      log: Logger.discard(),
      progress: () => {},
    };
    await kernels.import("k", kdir, ctx);
    const images = new ImageService({
      layout,
      store,
      ops: new InProcessOps(layout),
      kernels,
      blobs: new BlobCache(ociBlobsDir(layout)),
      catalogs,
    });
    const t0 = performance.now();
    await images.pull({ source: ref, kernelRef: "k" }, ctx);
    return performance.now() - t0;
  } finally {
    store.close();
    await Deno.remove(home, { recursive: true });
  }
}

async function stockPull(ref: string): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "bgp-stock-" });
  const run = async (program: string, args: string[]) => {
    const out = await new Deno.Command(program, { args, stdout: "null", stderr: "piped" }).output();
    if (!out.success) throw new Error(`${program}: ${new TextDecoder().decode(out.stderr)}`);
  };
  try {
    const t0 = performance.now();
    await run("skopeo", [
      "copy",
      "--src-tls-verify=false",
      `docker://${ref}`,
      `oci:${dir}/layout:v1`,
    ]);
    await run("umoci", ["unpack", "--image", `${dir}/layout:v1`, `${dir}/bundle`]);
    await run("mkfs.ext4", [
      "-q",
      "-F",
      "-E",
      "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1",
      "-d",
      `${dir}/bundle/rootfs`,
      `${dir}/rootfs.ext4`,
      "1G",
    ]);
    return performance.now() - t0;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs the benchmark and prints its figures. */
export async function main(): Promise<void> {
  await using registry = await startRegistry();
  const layout = await Deno.makeTempDir();
  try {
    const layers = [1, 2, 3].map((seed) => {
      const plain = layer(seed, 10, 1024 * 1024);
      return {
        bytes: new Uint8Array(zlib.gzipSync(plain, { level: 1 })),
        mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
        uncompressed: plain,
      };
    });
    const total = layers.reduce((n, l) => n + l.bytes.length, 0);
    await writeImage(layout, "v1", layers);
    await pushRaw(registry.url, layout, "v1", "bench/img", "v1");
    const ref = `${registry.host}/bench/img:v1`;
    const banger: number[] = [];
    const stock: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      banger.push(await bangerPull(ref));
      stock.push(await stockPull(ref));
    }
    heading(`pull: ${(total / 1024 / 1024).toFixed(1)} MB, 3 layers, from a local registry (cold)`);
    row("banger image pull, median", ms(median(banger)));
    row("skopeo copy + umoci unpack + mkfs.ext4 -d, median", ms(median(stock)));
    row("ratio banger / stock (goal ≤ 1.0)", `${(median(banger) / median(stock)).toFixed(2)}×`);
  } finally {
    await Deno.remove(layout, { recursive: true });
  }
}

if (import.meta.main) await main();
