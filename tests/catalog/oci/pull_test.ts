import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "../../fixtures/assert.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { proxyTo, startHttpServer } from "../../fixtures/http_server.ts";
import {
  pushLayout,
  pushRaw,
  setTag,
  startRegistry,
  umoci,
  writeImage,
  writeJsonBlob,
} from "../../fixtures/registry.ts";
import { tarBytes } from "../../fixtures/tar_writer.ts";
import { BlobCache } from "../../../catalog/oci/blob_cache.ts";
import { LayerError, OciError } from "../../../catalog/errors.ts";
import { pullImage, type PullResult } from "../../../catalog/oci/pull.ts";
import { gzipSync, zstdCompressSync } from "node:zlib";

const TOOLS = programs("docker-registry", "skopeo", "umoci");

interface Scratch extends AsyncDisposable {
  dir: string;
  cache: BlobCache;
  /** A fresh empty destination dir. */
  dest(): Promise<string>;
}

async function scratch(): Promise<Scratch> {
  const dir = await Deno.makeTempDir({ prefix: "banger-pull-" });
  let n = 0;
  return {
    dir,
    cache: new BlobCache(`${dir}/blobs`),
    dest: async () => {
      const d = `${dir}/dest${n++}`;
      await Deno.mkdir(d);
      return d;
    },
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** A rootfs tree with owners, setuid, links; then a whiteout layer and an opaque layer. */
async function buildUmociImage(dir: string): Promise<string> {
  const layout = `${dir}/layout`;
  const src = `${dir}/src`;
  await Deno.mkdir(`${src}/etc`, { recursive: true });
  await Deno.mkdir(`${src}/usr/bin`, { recursive: true });
  await Deno.mkdir(`${src}/opt/app`, { recursive: true });
  await Deno.mkdir(`${src}/var/lib/gone`, { recursive: true });
  await Deno.mkdir(`${src}/home/dev`, { recursive: true });
  await Deno.writeTextFile(`${src}/etc/motd`, "hello\n");
  await Deno.link(`${src}/etc/motd`, `${src}/etc/motd.hard`);
  await Deno.writeTextFile(`${src}/usr/bin/sudo`, "#!/bin/sh\n");
  await Deno.chmod(`${src}/usr/bin/sudo`, 0o4755);
  await Deno.symlink("usr/bin", `${src}/bin`);
  await Deno.writeTextFile(`${src}/opt/app/old`, "old");
  await Deno.writeTextFile(`${src}/var/lib/gone/x`, "x");
  await Deno.writeTextFile(`${src}/home/dev/.profile`, "p");
  await Deno.chown(`${src}/home/dev`, 1000, 1000);
  await Deno.chown(`${src}/home/dev/.profile`, 1000, 1001);
  await Deno.chmod(`${src}/home/dev`, 0o700);
  await Deno.mkdir(`${dir}/opt2/app`, { recursive: true });
  await Deno.writeTextFile(`${dir}/opt2/app/new`, "new");
  await umoci("init", "--layout", layout);
  await umoci("new", "--image", `${layout}:latest`);
  await umoci("insert", "--image", `${layout}:latest`, src, "/");
  await umoci("insert", "--image", `${layout}:latest`, "--whiteout", "/var/lib/gone");
  await umoci("insert", "--image", `${layout}:latest`, "--opaque", `${dir}/opt2`, "/opt");
  await umoci(
    "config",
    "--image",
    `${layout}:latest`,
    "--config.entrypoint",
    "/bin/sh",
    "--config.cmd",
    "-l",
    "--config.env",
    "PATH=/usr/bin",
    "--config.workingdir",
    "/home/dev",
    "--config.user",
    "1000:1000",
  );
  await umoci("gc", "--layout", layout);
  return layout;
}

async function checkFlattened(result: PullResult, dest: string): Promise<void> {
  const m = (p: string) => result.metadata.get(p);
  assertEquals([m("/usr/bin/sudo")?.mode, m("/usr/bin/sudo")?.uid], [0o4755, 0]);
  assertEquals([m("/home/dev")?.uid, m("/home/dev")?.gid, m("/home/dev")?.mode], [
    1000,
    1000,
    0o700,
  ]);
  assertEquals([m("/home/dev/.profile")?.uid, m("/home/dev/.profile")?.gid], [1000, 1001]);
  assertEquals([m("/bin")?.type, m("/bin")?.linkTarget], ["symlink", "usr/bin"]);
  assertEquals(m("/etc/motd.hard")?.type, "hardlink");
  assertEquals(m("/var/lib/gone"), undefined);
  assertEquals(m("/opt/app/old"), undefined);
  assertEquals(m("/opt/app/new")?.type, "file");
  const sudo = await Deno.lstat(`${dest}/usr/bin/sudo`);
  assertEquals((sudo.mode ?? 0) & 0o7777, 0o4755);
  const profile = await Deno.lstat(`${dest}/home/dev/.profile`);
  assertEquals([profile.uid, profile.gid], [1000, 1001]);
  assertEquals(((await Deno.lstat(`${dest}/home/dev`)).mode ?? 0) & 0o7777, 0o700);
  assertEquals(await Deno.readLink(`${dest}/bin`), "usr/bin");
  assertEquals(
    (await Deno.lstat(`${dest}/etc/motd`)).ino,
    (await Deno.lstat(`${dest}/etc/motd.hard`)).ino,
  );
  await assertRejects(() => Deno.lstat(`${dest}/var/lib/gone`), Deno.errors.NotFound);
  await assertRejects(() => Deno.lstat(`${dest}/opt/app/old`), Deno.errors.NotFound);
  assertEquals(await Deno.readTextFile(`${dest}/opt/app/new`), "new");
  assertEquals(result.config.entrypoint, ["/bin/sh"]);
  assertEquals(result.config.cmd, ["-l"]);
  assertEquals(result.config.env, ["PATH=/usr/bin"]);
  assertEquals([result.config.workingDir, result.config.user], ["/home/dev", "1000:1000"]);
  assertEquals(result.layers.length, 3);
  assertEquals(result.contentBytes, "hello\n#!/bin/sh\npnew".length);
}

gatedTest(
  "pullImage() from a real registry with htpasswd auth: Basic credentials from the credentials file, and a clear refusal without them",
  [root(), TOOLS],
  async () => {
    await using s = await scratch();
    const user = { user: "alice", password: "s3cret-pw" };
    await using registry = await startRegistry({ htpasswd: user });
    const layout = await buildUmociImage(s.dir);
    await pushLayout(`${layout}:latest`, `${registry.host}/private/img:latest`, {
      creds: `${user.user}:${user.password}`,
    });
    const ref = `${registry.host}/private/img:latest`;
    const refused = await assertRejects(
      () => pullImage({ ref, destDir: `${s.dir}/none`, cache: s.cache }),
      OciError,
    );
    assertEquals(refused.code, "permission_denied");
    assertStringIncludes(
      refused.message,
      "asks for a username and password, and none are configured",
    );
    const creds = `${s.dir}/config.json`;
    await Deno.writeTextFile(
      creds,
      JSON.stringify({
        auths: { [registry.host]: { auth: btoa(`${user.user}:${user.password}`) } },
      }),
    );
    const dest = await s.dest();
    const result = await pullImage({ ref, destDir: dest, cache: s.cache, credentialsFile: creds });
    await checkFlattened(result, dest);
  },
);

gatedTest(
  "pullImage() flattens a umoci image from a real registry with exact owners, modes and whiteouts",
  [root(), TOOLS],
  async (t) => {
    await using s = await scratch();
    await using registry = await startRegistry();
    const layout = await buildUmociImage(s.dir);
    for (
      const [name, opts] of [
        ["OCI manifest, gzip layers", {}],
        ["Docker v2s2 manifest", { format: "v2s2" as const }],
        ["OCI manifest, zstd layers", { zstd: true }],
      ] as const
    ) {
      await t.step(name, async () => {
        const tag = name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
        await pushLayout(`${layout}:latest`, `${registry.host}/test/img:${tag}`, opts);
        const dest = await s.dest();
        const progress: number[] = [];
        const result = await pullImage({
          ref: `${registry.host}/test/img:${tag}`,
          destDir: dest,
          cache: s.cache,
          onProgress: (p) => p.phase === "download" && progress.push(p.done),
        });
        await checkFlattened(result, dest);
        assert(result.digest.startsWith("sha256:"));
        assertEquals(result.digest, result.manifestDigest);
        if (progress.length > 0) assert(progress.at(-1) ?? 0 > 0);
      });
    }
    await t.step("by digest gives the same tree", async () => {
      const first = await pullImage({
        ref: `${registry.host}/test/img:oci-manifest-gzip-layers`,
        destDir: await s.dest(),
        cache: s.cache,
      });
      const dest = await s.dest();
      const result = await pullImage({
        ref: `${registry.host}/test/img@${first.digest}`,
        destDir: dest,
        cache: s.cache,
      });
      await checkFlattened(result, dest);
    });
  },
);

gatedTest(
  "pullImage() picks linux/amd64 from an index, skipping attestations and descending nested indexes",
  [TOOLS],
  async () => {
    await using s = await scratch();
    await using registry = await startRegistry();
    const layout = `${s.dir}/layout`;
    const amd = await writeImage(layout, "amd", [{
      bytes: tarBytes([{ path: "arch", content: "amd64" }]),
    }]);
    const arm = await writeImage(
      layout,
      "arm",
      [{ bytes: tarBytes([{ path: "arch", content: "arm64" }]) }],
      {},
      "arm64",
    );
    const empty = await writeJsonBlob(layout, {}, "application/vnd.oci.image.config.v1+json");
    const statement = await writeJsonBlob(layout, { _type: "x" }, "application/vnd.in-toto+json");
    const attestation = await writeJsonBlob(layout, {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: empty,
      layers: [statement],
    }, "application/vnd.oci.image.manifest.v1+json");
    const index = await writeJsonBlob(layout, {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          ...attestation,
          platform: { architecture: "unknown", os: "unknown" },
          annotations: {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": amd.digest,
          },
        },
        { ...arm, platform: { architecture: "arm64", os: "linux", variant: "v8" } },
        { ...amd, platform: { architecture: "amd64", os: "linux" } },
      ],
    }, "application/vnd.oci.image.index.v1+json");
    await setTag(layout, "multi", index);
    await pushRaw(registry.url, layout, "multi", "test/multi", "latest");
    const dest = await s.dest();
    const result = await pullImage({
      ref: `${registry.host}/test/multi:latest`,
      destDir: dest,
      cache: s.cache,
    });
    assertEquals(result.digest, index.digest);
    assertEquals(result.manifestDigest, amd.digest);
    assertEquals(await Deno.readTextFile(`${dest}/arch`), "amd64");

    const outer = await writeJsonBlob(layout, {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [index],
    }, "application/vnd.oci.image.index.v1+json");
    await setTag(layout, "nested", outer);
    await pushRaw(registry.url, layout, "nested", "test/multi", "nested");
    const nested = await pullImage({
      ref: `${registry.host}/test/multi:nested`,
      destDir: await s.dest(),
      cache: s.cache,
    });
    assertEquals(nested.manifestDigest, amd.digest);

    const armOnly = await writeJsonBlob(layout, {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{ ...arm, platform: { architecture: "arm64", os: "linux" } }],
    }, "application/vnd.oci.image.index.v1+json");
    await setTag(layout, "armonly", armOnly);
    await pushRaw(registry.url, layout, "armonly", "test/multi", "armonly");
    const dest2 = await s.dest();
    await assertRejects(
      () =>
        pullImage({ ref: `${registry.host}/test/multi:armonly`, destDir: dest2, cache: s.cache }),
      OciError,
      "no linux/amd64 image (it has linux/arm64)",
    );
  },
);

gatedTest(
  "pullImage() refuses hostile layers from a real registry and leaves nothing behind",
  [TOOLS],
  async (t) => {
    await using s = await scratch();
    await using registry = await startRegistry();
    const layout = `${s.dir}/layout`;
    await Deno.mkdir(`${s.dir}/outside`);
    await Deno.writeTextFile(`${s.dir}/outside/secret`, "keep");
    const cases = [
      ["dotdot", [{ path: "../outside/secret", content: "pwned" }], `contains ".."`],
      ["absolute", [{ path: `${s.dir}/outside/secret`, content: "pwned" }], "absolute"],
      ["symlink-then-write", [
        { path: "esc", type: "symlink" as const, linkName: `${s.dir}/outside` },
        { path: "esc/secret", content: "pwned" },
      ], "is a symlink"],
      ["hardlink-outside", [
        { path: "hl", type: "hardlink" as const, linkName: "../outside/secret" },
      ], `contains ".."`],
      ["bare-whiteout", [{ path: "a/.wh.", content: "" }], "whiteout without a name"],
    ] as const;
    for (const [tag, entries, why] of cases) {
      await t.step(tag, async () => {
        const plain = tarBytes([{ path: "ok", content: "fine" }, ...entries]);
        await writeImage(layout, tag, [
          { bytes: tarBytes([{ path: "base", content: "b" }]) },
          {
            bytes: gzipSync(plain),
            uncompressed: plain,
            mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          },
        ]);
        await pushLayout(`${layout}:${tag}`, `${registry.host}/test/hostile:${tag}`);
        const dest = await s.dest();
        await assertRejects(
          () =>
            pullImage({
              ref: `${registry.host}/test/hostile:${tag}`,
              destDir: dest,
              cache: s.cache,
            }),
          LayerError,
          why,
        );
        assertEquals([...Deno.readDirSync(dest)], []);
        assertEquals(Deno.readTextFileSync(`${s.dir}/outside/secret`), "keep");
        assertEquals([...Deno.readDirSync(`${s.dir}/outside`)].length, 1);
      });
    }
    await t.step("compression is sniffed, not taken from the media type", async () => {
      const plain = tarBytes([{ path: "z", content: "zstd" }]);
      await writeImage(layout, "sniff", [
        { bytes: zstdCompressSync(plain), uncompressed: plain }, // labelled plain tar
        { bytes: tarBytes([{ path: "p", content: "plain" }]) },
      ]);
      await pushRaw(registry.url, layout, "sniff", "test/hostile", "sniff");
      const dest = await s.dest();
      await pullImage({
        ref: `${registry.host}/test/hostile:sniff`,
        destDir: dest,
        cache: s.cache,
      });
      assertEquals(await Deno.readTextFile(`${dest}/z`), "zstd");
      assertEquals(await Deno.readTextFile(`${dest}/p`), "plain");
    });
    await t.step("a layer whose content contradicts the config's diff_id", async () => {
      const plain = tarBytes([{ path: "a", content: "a" }]);
      await writeImage(layout, "diffid", [{ bytes: plain, uncompressed: tarBytes([]) }]);
      await pushRaw(registry.url, layout, "diffid", "test/hostile", "diffid");
      const dest = await s.dest();
      await assertRejects(
        () =>
          pullImage({ ref: `${registry.host}/test/hostile:diffid`, destDir: dest, cache: s.cache }),
        LayerError,
        "the config says",
      );
      assertEquals([...Deno.readDirSync(dest)], []);
    });
  },
);

gatedTest(
  "pullImage() run twice at once over one blob cache downloads each blob once (counting proxy)",
  [TOOLS],
  async () => {
    await using s = await scratch();
    await using registry = await startRegistry();
    await using proxy = await startHttpServer(proxyTo(registry.url));
    const layout = `${s.dir}/layout`;
    const layers = [1, 2, 3].map((i) => ({
      bytes: tarBytes([{ path: `f${i}`, content: String(i).repeat(100_000 * i) }]),
    }));
    await writeImage(layout, "latest", layers);
    await pushLayout(`${layout}:latest`, `${registry.host}/test/shared:latest`);
    const ref = `${proxy.host}/test/shared:latest`;
    const [a, b] = await Promise.all([
      pullImage({ ref, destDir: await s.dest(), cache: s.cache }),
      pullImage({ ref, destDir: await s.dest(), cache: s.cache }),
    ]);
    assertEquals(a.manifestDigest, b.manifestDigest);
    assertEquals(proxy.count("/v2/test/shared/blobs/", "GET"), 4);
    await pullImage({ ref, destDir: await s.dest(), cache: s.cache });
    assertEquals(proxy.count("/v2/test/shared/blobs/", "GET"), 4);
  },
);

gatedTest(
  "pullImage() cancelled mid-download leaves no temp file, no blob and an empty destination",
  [TOOLS],
  async () => {
    await using s = await scratch();
    await using registry = await startRegistry();
    const layout = `${s.dir}/layout`;
    const big = tarBytes([{ path: "big", content: new Uint8Array(4_000_000).fill(7) }]);
    const manifest = await writeImage(layout, "latest", [{ bytes: big }]);
    await pushRaw(registry.url, layout, "latest", "test/cancel", "latest");
    const manifestJson = JSON.parse(
      await Deno.readTextFile(`${layout}/blobs/sha256/${manifest.digest.slice(7)}`),
    );
    const layerDigest: string = manifestJson.layers[0].digest;
    const forward = proxyTo(registry.url);
    // the layer's body stalls after its first chunk until the client goes away
    await using proxy = await startHttpServer(async (req) => {
      const res = await forward(req);
      if (!req.url.includes(layerDigest) || res.body === null) return res;
      const reader = res.body.getReader();
      const first = await reader.read();
      return new Response(
        new ReadableStream({
          start(c) {
            if (first.value) c.enqueue(first.value.slice(0, 1000));
          },
          pull: () => new Promise(() => {}),
          cancel: () => reader.cancel(),
        }),
        { headers: res.headers },
      );
    });
    const controller = new AbortController();
    const dest = await s.dest();
    const err = await assertRejects(
      () =>
        pullImage({
          ref: `${proxy.host}/test/cancel:latest`,
          destDir: dest,
          cache: s.cache,
          signal: controller.signal,
          onProgress: (p) => {
            if (p.phase === "download" && p.digest === layerDigest && p.blobDone > 0) {
              controller.abort();
            }
          },
        }),
      OciError,
      "cancelled",
    );
    assertEquals(err.code, "cancelled");
    const left = [...Deno.readDirSync(s.cache.dir)].map((e) => e.name);
    assertEquals(left.filter((n) => n.startsWith(".tmp-")), []);
    assertEquals(left.includes(layerDigest.slice(7)), false);
    assertEquals([...Deno.readDirSync(dest)], []);
  },
);
