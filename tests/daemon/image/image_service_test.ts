/**
 * ImageService and KernelService against real servers: catalog bundles from a local HTTP
 * server, OCI images from a real registry, and the pull-lock invariants (coalescing, overlap
 * of different names, abortable waiters, atomic publication).
 */
import { createHash } from "node:crypto";
import zlib from "node:zlib";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "../../fixtures/assert.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { proxyTo, startHttpServer, type TestHttpServer } from "../../fixtures/http_server.ts";
import { pushRaw, startRegistry, writeImage } from "../../fixtures/registry.ts";
import { tarBytes } from "../../fixtures/tar_writer.ts";
import { BlobCache } from "../../../catalog/oci/blob_cache.ts";
import type { Catalogs } from "../../../catalog/catalog_index.ts";
import { ImageService } from "../../../daemon/image/image_service.ts";
import { KernelService } from "../../../daemon/image/kernel_service.ts";
import { Logger } from "../../../daemon/logger.ts";
import type { OpContext } from "../../../daemon/rpc/server.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import {
  imagesDir,
  kernelsDir,
  type Layout,
  ociBlobsDir,
  resolveLayout,
  storePath,
} from "../../../host/layout.ts";
import { readExt4File } from "../../../host/disk/ext4.ts";
import { Store } from "../../../store/db.ts";

const needs = [root(), programs("mkfs.ext4", "debugfs", "docker-registry")];
const ELF = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, ...new Array(56).fill(0)]);

interface World extends AsyncDisposable {
  layout: Layout;
  store: Store;
  images: ImageService;
  kernels: KernelService;
  server: TestHttpServer;
  /** Bundles the server offers, by path. */
  bundles: Map<string, Uint8Array<ArrayBuffer>>;
  /** Resolved when a request for `path` arrives; its response waits for `release(path)`. */
  gate(path: string): { arrived: Promise<void>; release(): void };
  catalogs: Catalogs;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function imageBundle(name: string): Promise<Uint8Array<ArrayBuffer>> {
  const dir = await Deno.makeTempDir();
  try {
    const mk = await new Deno.Command("mkfs.ext4", {
      args: ["-q", "-F", `${dir}/rootfs.ext4`, "8M"],
    }).output();
    assert(mk.success);
    const rootfs = await Deno.readFile(`${dir}/rootfs.ext4`);
    const manifest = JSON.stringify({
      name,
      distro: "test",
      arch: "x86_64",
      kernel_ref: "k-bundle",
      size: rootfs.length,
      created_at: "2026-01-01T00:00:00Z",
    });
    const tar = tarBytes([{ path: "rootfs.ext4", content: rootfs }, {
      path: "manifest.json",
      content: manifest,
    }]);
    return new Uint8Array(zlib.zstdCompressSync(tar));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function world(): Promise<World> {
  const home = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgi-" });
  const layout = resolveLayout({ BANGER_HOME: home }, 0, false);
  for (const d of [layout.stateDir, layout.cacheDir, layout.runtimeDir]) {
    await Deno.mkdir(d, { recursive: true });
  }
  const store = Store.open(storePath(layout));
  const bundles = new Map<string, Uint8Array<ArrayBuffer>>();
  const gates = new Map<
    string,
    { arrived: PromiseWithResolvers<void>; released: PromiseWithResolvers<void> }
  >();
  const gateOf = (path: string) => {
    let g = gates.get(path);
    if (!g) {
      gates.set(path, g = { arrived: Promise.withResolvers(), released: Promise.withResolvers() });
    }
    return g;
  };
  const server = await startHttpServer(async (req) => {
    const path = new URL(req.url).pathname;
    const g = gates.get(path);
    if (g) {
      g.arrived.resolve();
      await g.released.promise;
    }
    const body = bundles.get(path);
    return body ? new Response(body) : new Response("no", { status: 404 });
  });
  const kernelTar = new Uint8Array(zlib.gzipSync(tarBytes([{ path: "vmlinux", content: ELF }])));
  bundles.set("/k-bundle.tar.gz", kernelTar);
  for (const name of ["img-a", "img-b", "img-c"]) {
    bundles.set(`/${name}.tar.zst`, await imageBundle(name));
  }
  const bundleRef = (path: string) => ({
    url: `${server.url}${path}`,
    sha256: sha256(bundles.get(path) ?? new Uint8Array()),
    size: bundles.get(path)?.length ?? 0,
  });
  const catalogs: Catalogs = {
    images: ["img-a", "img-b", "img-c"].map((name) => ({
      name,
      arch: "x86_64" as const,
      description: name,
      kernel_ref: "k-bundle",
      bundle: bundleRef(`/${name}.tar.zst`),
    })),
    kernels: [{
      name: "k-bundle",
      arch: "x86_64" as const,
      description: "k",
      bundle: bundleRef("/k-bundle.tar.gz"),
    }],
  };
  const catalogFn = () => Promise.resolve(catalogs);
  const kernels = new KernelService({ layout, store, catalogs: catalogFn });
  const images = new ImageService({
    layout,
    store,
    ops: new InProcessOps(layout),
    kernels,
    blobs: new BlobCache(ociBlobsDir(layout)),
    catalogs: catalogFn,
  });
  return {
    layout,
    store,
    images,
    kernels,
    server,
    bundles,
    catalogs,
    gate: (path) => {
      const g = gateOf(path);
      return { arrived: g.arrived.promise, release: () => g.released.resolve() };
    },
    async [Symbol.asyncDispose]() {
      for (const g of gates.values()) g.released.resolve();
      await server.close();
      store.close();
      await Deno.remove(home, { recursive: true });
    },
  };
}

function ctx(signal?: AbortSignal): OpContext {
  return {
    opId: "op-test",
    signal: signal ?? new AbortController().signal,
    log: Logger.discard(),
    progress: () => {},
  };
}

function stagingLeft(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith(".staging-"));
  } catch {
    return [];
  }
}

gatedTest(
  "ImageService.pull() of a catalog bundle verifies it, auto-pulls its kernel and publishes both atomically (root)",
  needs,
  async () => {
    await using w = await world();
    const { image, already } = await w.images.pull({ source: "img-a" }, ctx());
    assertEquals(already, false);
    assertEquals(image.kernelName, "k-bundle");
    assertEquals(image.rootfs, `${imagesDir(w.layout)}/img-a/rootfs.ext4`);
    assertEquals(w.kernels.get("k-bundle").vmlinux, `${kernelsDir(w.layout)}/k-bundle/vmlinux`);
    const manifest = JSON.parse(
      await Deno.readTextFile(`${kernelsDir(w.layout)}/k-bundle/manifest.json`),
    );
    assertEquals(manifest.sha256, sha256(ELF));
    assertEquals([stagingLeft(imagesDir(w.layout)), stagingLeft(kernelsDir(w.layout))], [[], []]);
    const again = await w.images.pull({ source: "img-a" }, ctx());
    assertEquals([again.already, again.image.id], [true, image.id]);
  },
);

gatedTest(
  "ImageService.pull() of a corrupted bundle fails and leaves no staging dir, no row and no files (root)",
  needs,
  async () => {
    await using w = await world();
    const bytes = w.bundles.get("/img-b.tar.zst") ?? new Uint8Array();
    bytes[bytes.length - 10] ^= 0xff; // the catalog's sha256 no longer matches
    await assertRejects(() => w.images.pull({ source: "img-b" }, ctx()), Error, "sha256");
    assertEquals(w.images.list(), []);
    assertEquals(stagingLeft(imagesDir(w.layout)), []);
    await Deno.stat(`${imagesDir(w.layout)}/img-b`).then(
      () => assert(false, "published"),
      () => {},
    );
  },
);

gatedTest(
  "ImageService.pull() of one name twice at once downloads once; the loser takes the winner's image (root)",
  needs,
  async () => {
    await using w = await world();
    const gate = w.gate("/img-a.tar.zst");
    const first = w.images.pull({ source: "img-a" }, ctx());
    await gate.arrived;
    const second = w.images.pull({ source: "img-a" }, ctx());
    gate.release();
    const [a, b] = await Promise.all([first, second]);
    assertEquals(a.image.id, b.image.id);
    assertEquals([a.already, b.already], [false, true]);
    assertEquals(w.server.count("/img-a.tar.zst", "GET"), 1, "one download");
  },
);

gatedTest("ImageService.pull() of two names runs both at once (root)", needs, async () => {
  await using w = await world();
  const gateA = w.gate("/img-a.tar.zst");
  const gateB = w.gate("/img-b.tar.zst");
  const pulls = [
    w.images.pull({ source: "img-a" }, ctx()),
    w.images.pull({ source: "img-b" }, ctx()),
  ];
  // Both downloads are requested while the first is still held: the pulls overlap.
  await Promise.all([gateA.arrived, gateB.arrived]);
  gateA.release();
  gateB.release();
  const names = (await Promise.all(pulls)).map((r) => r.image.name);
  assertEquals(names, ["img-a", "img-b"]);
});

gatedTest(
  "ImageService.pull() waiter whose request is cancelled leaves the queue at once (root)",
  needs,
  async () => {
    await using w = await world();
    const gate = w.gate("/img-c.tar.zst");
    const holder = w.images.pull({ source: "img-c" }, ctx());
    await gate.arrived;
    const controller = new AbortController();
    const waiter = w.images.pull({ source: "img-c" }, ctx(controller.signal));
    controller.abort(new Error("client went away"));
    const err = await assertRejects(() => waiter);
    assertEquals((err as { code?: string }).code, "cancelled");
    gate.release();
    assertEquals((await holder).image.name, "img-c");
  },
);

gatedTest(
  "KernelService.remove() refuses while an image uses the kernel (root)",
  needs,
  async () => {
    await using w = await world();
    await w.images.pull({ source: "img-a" }, ctx());
    const err = await assertRejects(() => w.kernels.remove("k-bundle", ctx()));
    assertStringIncludes(
      (err as Error).message,
      `Cannot remove kernel "k-bundle": used by image img-a`,
    );
    await w.images.delete("img-a", ctx());
    await w.kernels.remove("k-bundle", ctx());
    assertEquals(w.kernels.list(), []);
  },
);

gatedTest(
  "ImageService.pull() of an OCI image builds an ext4 with owners, modes and banger's guest pieces (root, registry)",
  [...needs, programs("skopeo", "umoci")],
  async () => {
    await using w = await world();
    await using registry = await startRegistry();
    await using proxy = await startHttpServer(proxyTo(registry.url));
    const layout = await Deno.makeTempDir();
    try {
      const base = tarBytes([
        { path: "etc/", type: "dir" },
        { path: "etc/motd", content: "hello\n" },
        { path: "usr/bin/", type: "dir" },
        { path: "usr/bin/sudo", content: "#!/bin/sh\n", mode: 0o4755 },
        // `setcap cap_net_raw+ep`, as Debian's ping ships; the build host's label is not carried.
        {
          path: "usr/bin/ping",
          content: "#!/bin/sh\n",
          mode: 0o755,
          pax: {
            "SCHILY.xattr.security.capability": new Uint8Array([
              1,
              0,
              0,
              2,
              0,
              0x20,
              0,
              0,
              ...new Array(12).fill(0),
            ]),
            "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0",
            "SCHILY.xattr.user.origin": "layer",
          },
        },
        { path: "home/u/", type: "dir", uid: 1000, gid: 1000, mode: 0o700 },
        { path: "home/u/notes", content: "n", uid: 1000, gid: 1000, mode: 0o600 },
        { path: "tmp/gone", content: "x" },
        // Host keys baked into the image: every VM from it would share them.
        { path: "etc/ssh/", type: "dir" },
        { path: "etc/ssh/ssh_host_ed25519_key", content: "baked", mode: 0o600 },
        { path: "etc/ssh/ssh_host_ed25519_key.pub", content: "baked.pub" },
        { path: "etc/ssh/sshd_config", content: "# kept\n" },
      ]);
      const top = tarBytes([{ path: "tmp/.wh.gone", content: "" }]);
      await writeImage(layout, "v1", [{ bytes: base }, { bytes: top }]);
      await pushRaw(registry.url, layout, "v1", "test/tiny", "v1");
      const ref = `${proxy.host}/test/tiny:v1`;
      await w.kernels.pull("k-bundle", ctx());
      const [a, b] = await Promise.all([
        w.images.pull({ source: ref, kernelRef: "k-bundle" }, ctx()),
        w.images.pull({ source: ref, kernelRef: "k-bundle" }, ctx()),
      ]);
      assertEquals(a.image.name, "tiny-v1");
      assertEquals(a.image.id, b.image.id, "one name, one image");
      assertEquals(proxy.count("/v2/test/tiny/blobs/", "GET"), 3, "config + 2 layers, once");
      assert(a.image.sizeBytes >= 1024 ** 3, "at least 1 GiB");
      assertEquals(a.image.init, "/usr/local/libexec/banger-first-boot");
      const rootfs = a.image.rootfs;
      assertEquals(new TextDecoder().decode(await readExt4File(rootfs, "/etc/motd")), "hello\n");
      const stat = async (p: string) => {
        const out = await new Deno.Command("debugfs", {
          args: ["-R", `stat ${p}`, rootfs],
          stdout: "piped",
          stderr: "piped",
        }).output();
        return new TextDecoder().decode(out.stdout);
      };
      assertStringIncludes(await stat("/usr/bin/sudo"), "Mode:  04755");
      const xattrs = await stat("/usr/bin/ping");
      assertStringIncludes(
        xattrs,
        "security.capability (20) = 01 00 00 02 00 20 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
      );
      assertStringIncludes(xattrs, 'user.origin (5) = "layer"');
      assert(!xattrs.includes("selinux"), xattrs);
      assertStringIncludes(await stat("/home/u/notes"), "User:  1000   Group:  1000");
      const gone = await new Deno.Command("debugfs", {
        args: ["-R", "stat /tmp/gone", rootfs],
        stderr: "piped",
        stdout: "piped",
      }).output();
      assertStringIncludes(new TextDecoder().decode(gone.stderr), "File not found");
      for (const key of ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]) {
        const baked = await new Deno.Command("debugfs", {
          args: ["-R", `stat /etc/ssh/${key}`, rootfs],
          stderr: "piped",
          stdout: "piped",
        }).output();
        assertStringIncludes(new TextDecoder().decode(baked.stderr), "File not found", key);
      }
      assertStringIncludes(
        await stat("/usr/local/libexec/banger-network-bootstrap"),
        "Mode:  0755",
      );
      const fsck = await new Deno.Command("e2fsck", {
        args: ["-fn", rootfs],
        stdout: "null",
        stderr: "null",
      }).output();
      assertEquals(fsck.code, 0, "the built filesystem is clean");
    } finally {
      await Deno.remove(layout, { recursive: true });
    }
  },
);

gatedTest("ImageService.pull() of a hostile OCI layer publishes nothing (root, registry)", [
  ...needs,
  programs("skopeo", "umoci"),
], async () => {
  await using w = await world();
  await using registry = await startRegistry();
  const layout = await Deno.makeTempDir();
  try {
    await writeImage(layout, "evil", [{ bytes: tarBytes([{ path: "../escape", content: "x" }]) }]);
    await pushRaw(registry.url, layout, "evil", "test/evil", "v1");
    await w.kernels.pull("k-bundle", ctx());
    await assertRejects(() =>
      w.images.pull({ source: `${registry.host}/test/evil:v1`, kernelRef: "k-bundle" }, ctx())
    );
    assertEquals(w.images.list(), []);
    assertEquals(stagingLeft(imagesDir(w.layout)), []);
  } finally {
    await Deno.remove(layout, { recursive: true });
  }
});

gatedTest(
  "KernelService.pull() of one name twice at once downloads once and publishes one manifest (root)",
  needs,
  async () => {
    await using w = await world();
    const gate = w.gate("/k-bundle.tar.gz");
    const first = w.kernels.pull("k-bundle", ctx());
    await gate.arrived;
    const second = w.kernels.pull("k-bundle", ctx());
    gate.release();
    const [a, b] = await Promise.all([first, second]);
    assertEquals([a.already, b.already], [false, true]);
    assertEquals(w.server.count("/k-bundle.tar.gz", "GET"), 1);
    const manifest = JSON.parse(
      await Deno.readTextFile(`${kernelsDir(w.layout)}/k-bundle/manifest.json`),
    );
    assertEquals(manifest.name, "k-bundle");
    assertEquals(stagingLeft(kernelsDir(w.layout)), []);
  },
);

gatedTest(
  "KernelService.remove() waits for a pull of the same name instead of racing it (root)",
  needs,
  async () => {
    await using w = await world();
    const gate = w.gate("/k-bundle.tar.gz");
    const pull = w.kernels.pull("k-bundle", ctx());
    await gate.arrived;
    let removed = false;
    const remove = w.kernels.remove("k-bundle", ctx()).then(() => removed = true);
    await new Promise((r) => setTimeout(r, 0));
    assert(!removed, "rm waits while the pull holds the kernel's lock");
    gate.release();
    await pull;
    await remove;
    assertEquals(w.kernels.list(), [], "rm ran after the pull published, and removed it");
    await Deno.stat(`${kernelsDir(w.layout)}/k-bundle`).then(
      () => assert(false, "files kept"),
      () => {},
    );
  },
);

gatedTest(
  "ImageService.promote() copies a registered image into the store, sparse, keeping its id (root)",
  needs,
  async () => {
    await using w = await world();
    const outside = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgi-reg-" });
    try {
      // A fully allocated 64 MiB ext4 file, as `dd` or `cp --sparse=never` would leave it.
      const rootfs = `${outside}/disk.ext4`;
      await Deno.writeFile(rootfs, new Uint8Array(64 * 1024 * 1024));
      const mk = await new Deno.Command("mkfs.ext4", { args: ["-q", "-F", rootfs] }).output();
      assert(mk.success, "mkfs.ext4");
      await Deno.writeFile(`${outside}/vmlinux`, ELF);
      const registered = await w.images.register(
        { name: "mine", rootfs, kernel: `${outside}/vmlinux` },
        ctx(),
      );
      assertEquals(registered.dir, undefined, "registered images stay where they are");

      const promoted = await w.images.promote("mine", ctx());
      const dir = `${imagesDir(w.layout)}/mine`;
      assertEquals([promoted.id, promoted.dir, promoted.rootfs], [
        registered.id,
        dir,
        `${dir}/rootfs.ext4`,
      ]);
      assertEquals(promoted.kernelFiles?.vmlinux, `${dir}/vmlinux`);
      assertEquals(await Deno.readFile(promoted.rootfs), await Deno.readFile(rootfs));
      assertEquals(await Deno.readFile(`${dir}/vmlinux`), ELF);
      const blocks = async (p: string) => ((await Deno.stat(p)).blocks ?? 0) * 512;
      assert(
        await blocks(promoted.rootfs) < (await blocks(rootfs)) / 4,
        `the copy keeps mkfs's empty space as holes: ${await blocks(promoted.rootfs)} bytes`,
      );
      assertEquals(stagingLeft(imagesDir(w.layout)), []);
      assertEquals((await w.images.promote("mine", ctx())).rootfs, promoted.rootfs, "idempotent");
    } finally {
      await Deno.remove(outside, { recursive: true });
    }
  },
);
