import { assert, assertEquals, assertRejects } from "../fixtures/assert.ts";
import { brokenBody, startHttpServer } from "../fixtures/http_server.ts";
import { tarBytes, type TarSpec } from "../fixtures/tar_writer.ts";
import { fetchBundle, type FetchBundleOptions } from "../../catalog/bundle.ts";
import { BundleError } from "../../catalog/errors.ts";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { createHash } from "node:crypto";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function zst(entries: TarSpec[]): Uint8Array<ArrayBuffer> {
  return new Uint8Array(zstdCompressSync(tarBytes(entries)));
}

async function withDest(fn: (dest: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "banger-bundle-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Serves `bytes` at /b.tar.zst and returns fetchBundle options for it. */
async function serve(bytes: Uint8Array<ArrayBuffer>) {
  const server = await startHttpServer(() => new Response(bytes));
  const options = (dest: string, kind: "image" | "kernel" = "image"): FetchBundleOptions => ({
    url: `${server.url}/b.tar.zst`,
    sha256: sha256(bytes),
    size: bytes.length,
    kind,
    destDir: dest,
  });
  return { server, options };
}

const list = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

const rootfs = new Uint8Array(1 << 20);
rootfs.set([0x53, 0xef], 1080);

Deno.test("fetchBundle() verifies and extracts an image bundle, keeping rootfs.ext4 sparse", async () => {
  const bytes = zst([
    { path: "./", type: "dir" },
    { path: "./rootfs.ext4", content: rootfs },
    { path: "./manifest.json", content: '{"name":"debian-bookworm"}' },
    { path: "./work-seed.ext4", content: "seed" },
  ]);
  const { server, options } = await serve(bytes);
  await using _ = server;
  await withDest(async (dest) => {
    const seen: string[] = [];
    const result = await fetchBundle({
      ...options(dest),
      onProgress: (p) => p.phase === "extract" && p.file && seen.push(p.file),
    });
    assertEquals(result.files, ["rootfs.ext4", "manifest.json", "work-seed.ext4"]);
    assertEquals(seen, result.files);
    assertEquals(list(dest), ["manifest.json", "rootfs.ext4", "work-seed.ext4"]);
    assertEquals(await Deno.readFile(`${dest}/rootfs.ext4`), rootfs);
    const info = await Deno.stat(`${dest}/rootfs.ext4`);
    assert(
      (info.blocks ?? 0) * 512 < rootfs.length / 4,
      `rootfs.ext4 is not sparse: ${info.blocks}`,
    );
  });
});

Deno.test("fetchBundle() extracts a gzip kernel bundle with its modules tree", async () => {
  const bytes = new Uint8Array(gzipSync(tarBytes([
    { path: "vmlinux", content: "ELF" },
    { path: "initrd.img", content: "cpio" },
    { path: "modules/", type: "dir" },
    { path: "modules/6.1.0-x/kernel/drivers/", type: "dir" },
    { path: "modules/6.1.0-x/kernel/drivers/virtio_blk.ko", content: "ko" },
    { path: "modules/6.1.0-x/modules.dep", content: "dep" },
  ])));
  const { server, options } = await serve(bytes);
  await using _ = server;
  await withDest(async (dest) => {
    const result = await fetchBundle(options(dest, "kernel"));
    assertEquals(result.files, [
      "vmlinux",
      "initrd.img",
      "modules/6.1.0-x/kernel/drivers/virtio_blk.ko",
      "modules/6.1.0-x/modules.dep",
    ]);
    assertEquals(await Deno.readTextFile(`${dest}/modules/6.1.0-x/modules.dep`), "dep");
  });
});

Deno.test("fetchBundle() refuses bad bundles and leaves the destination empty", async (t) => {
  const good: TarSpec[] = [
    { path: "rootfs.ext4", content: "fs" },
    { path: "manifest.json", content: "{}" },
  ];
  const cases: [string, TarSpec[], "image" | "kernel", string][] = [
    [
      "an unexpected entry",
      [...good, { path: "evil.sh", content: "x" }],
      "image",
      "is not expected",
    ],
    [
      "a path escape",
      [{ path: "../rootfs.ext4", content: "x" }, ...good],
      "image",
      `contains ".."`,
    ],
    ["an absolute path", [{ path: "/etc/cron.d/x", content: "x" }], "image", "absolute"],
    [
      "a symlink",
      [
        { path: "rootfs.ext4", type: "symlink", linkName: "/etc/shadow" },
        { path: "manifest.json", content: "{}" },
      ],
      "image",
      "is a symlink",
    ],
    [
      "a symlink in modules/",
      [
        { path: "vmlinux", content: "k" },
        { path: "modules/build", type: "symlink", linkName: "/usr/src" },
      ],
      "kernel",
      "is a symlink",
    ],
    [
      "a directory outside modules/",
      [{ path: "rootfs.ext4/", type: "dir" }, ...good],
      "image",
      "is a dir",
    ],
    [
      "a duplicate entry",
      [...good, { path: "./manifest.json", content: "{}" }],
      "image",
      "appears twice",
    ],
    [
      "a missing rootfs.ext4",
      [{ path: "manifest.json", content: "{}" }],
      "image",
      `lacks "rootfs.ext4"`,
    ],
    [
      "a kernel file in an image bundle",
      [...good, { path: "vmlinux", content: "k" }],
      "image",
      "not expected",
    ],
  ];
  for (const [name, entries, kind, why] of cases) {
    await t.step(name, async () => {
      const { server, options } = await serve(zst(entries));
      await using _ = server;
      await withDest(async (dest) => {
        const err = await assertRejects(() => fetchBundle(options(dest, kind)), BundleError, why);
        assertEquals(err.code, "invalid_argument");
        assertEquals(list(dest), []);
      });
    });
  }
});

Deno.test("fetchBundle() verifies sha256 and size before extracting anything", async (t) => {
  const bytes = zst([{ path: "rootfs.ext4", content: "fs" }, {
    path: "manifest.json",
    content: "{}",
  }]);
  await t.step("a corrupted bundle", async () => {
    const corrupt = bytes.slice();
    corrupt[corrupt.length - 5] ^= 0xff;
    await using server = await startHttpServer(() => new Response(corrupt));
    await withDest(async (dest) => {
      await assertRejects(
        () =>
          fetchBundle({
            url: `${server.url}/b`,
            sha256: sha256(bytes),
            size: bytes.length,
            kind: "image",
            destDir: dest,
          }),
        BundleError,
        "its sha256 is",
      );
      assertEquals(list(dest), []);
    });
  });
  for (
    const [name, respond, size, why] of [
      [
        "a Content-Length other than the catalog size",
        () => new Response(bytes),
        bytes.length + 1,
        "the server sends",
      ],
      [
        "a chunked body shorter than the catalog size",
        () => new Response(new Blob([bytes.slice(0, 10)]).stream()),
        bytes.length,
        "got 10 bytes",
      ],
      [
        "a chunked body longer than the catalog size",
        () => new Response(new Blob([bytes, bytes]).stream()),
        bytes.length,
        "larger than",
      ],
      [
        "a connection that breaks off",
        () => new Response(brokenBody(bytes, 10)),
        bytes.length,
        "broke off",
      ],
    ] as const
  ) {
    await t.step(name, async () => {
      await using server = await startHttpServer(respond);
      await withDest(async (dest) => {
        await assertRejects(
          () =>
            fetchBundle({
              url: `${server.url}/b`,
              sha256: sha256(bytes),
              size,
              kind: "image",
              destDir: dest,
            }),
          BundleError,
          why,
        );
        assertEquals(list(dest), []);
      });
    });
  }
});

Deno.test("fetchBundle() keeps Authorization on its own host and drops it past a redirect to another host", async () => {
  const bytes = zst([{ path: "rootfs.ext4", content: "fs" }, {
    path: "manifest.json",
    content: "{}",
  }]);
  await using mirror = await startHttpServer(() => new Response(bytes));
  await using origin = await startHttpServer((req) => {
    const url = new URL(req.url);
    if (url.pathname === "/b") return Response.redirect(`${url.origin}/moved`, 301);
    return Response.redirect(`http://localhost:${mirror.port}/object?sig=abc`, 302);
  });
  await withDest(async (dest) => {
    await fetchBundle({
      url: `${origin.url}/b`,
      sha256: sha256(bytes),
      size: bytes.length,
      kind: "image",
      destDir: dest,
      headers: { Authorization: "Bearer secret" },
    });
    assertEquals(list(dest), ["manifest.json", "rootfs.ext4"]);
  });
  assertEquals(origin.requests.map((r) => [r.path, r.headers.get("authorization")]), [
    ["/b", "Bearer secret"],
    ["/moved", "Bearer secret"],
  ]);
  assertEquals(mirror.requests.map((r) => [r.path, r.headers.get("authorization")]), [
    ["/object?sig=abc", null],
  ]);
});

Deno.test("fetchBundle() cancelled mid-download leaves the destination empty", async () => {
  const bytes = new Uint8Array(
    zstdCompressSync(tarBytes([{
      path: "rootfs.ext4",
      content: new Uint8Array(1 << 20).map((_, i) => i * 7),
    }])),
  );
  await using server = await startHttpServer(() =>
    new Response(
      new ReadableStream({
        start(c) {
          c.enqueue(bytes.slice(0, 100));
        },
        pull: () => new Promise(() => {}),
      }),
    )
  );
  await withDest(async (dest) => {
    const controller = new AbortController();
    const err = await assertRejects(
      () =>
        fetchBundle({
          url: `${server.url}/b`,
          sha256: sha256(bytes),
          size: bytes.length,
          kind: "image",
          destDir: dest,
          signal: controller.signal,
          onProgress: (p) => p.done > 0 && controller.abort(),
        }),
      BundleError,
      "cancelled",
    );
    assertEquals(err.code, "cancelled");
    assertEquals(list(dest), []);
  });
});
