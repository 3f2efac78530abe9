import { assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { brokenBody, startHttpServer, type TestHandler } from "../../fixtures/http_server.ts";
import { BlobCache } from "../../../catalog/oci/blob_cache.ts";
import { OciError } from "../../../catalog/errors.ts";
import { pullImage } from "../../../catalog/oci/pull.ts";
import { RegistryClient, sha256Digest } from "../../../catalog/oci/registry.ts";
import { tarBytes } from "../../fixtures/tar_writer.ts";

const enc = new TextEncoder();
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

interface FakeImage {
  routes: Map<string, () => Response>;
  manifestDigest: string;
  layerDigest: string;
  layer: Uint8Array<ArrayBuffer>;
}

/** A fake registry's routes for one valid single-layer image `test/img:latest`. */
async function fakeImage(): Promise<FakeImage> {
  const layer = tarBytes([{ path: "hello", content: "world" }]);
  const layerDigest = await sha256Digest(layer);
  const config = enc.encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    config: { Cmd: ["sh"] },
    rootfs: { type: "layers", diff_ids: [layerDigest] },
  }));
  const configDigest = await sha256Digest(config);
  const manifest = enc.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: configDigest,
      size: config.length,
    },
    layers: [{
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: layerDigest,
      size: layer.length,
    }],
  }));
  const manifestDigest = await sha256Digest(manifest);
  const routes = new Map<string, () => Response>([
    ["/v2/", () => Response.json({})],
    ["/v2/test/img/manifests/latest", () => manifestResponse(manifest, manifestDigest)],
    [`/v2/test/img/manifests/${manifestDigest}`, () => manifestResponse(manifest, manifestDigest)],
    [`/v2/test/img/blobs/${configDigest}`, () => new Response(config)],
    [`/v2/test/img/blobs/${layerDigest}`, () => new Response(layer)],
  ]);
  return { routes, manifestDigest, layerDigest, layer };
}

function manifestResponse(body: Uint8Array<ArrayBuffer>, digest?: string, type = OCI_MANIFEST) {
  const headers: Record<string, string> = { "Content-Type": type };
  if (digest) headers["Docker-Content-Digest"] = digest;
  return new Response(body, { headers });
}

function router(routes: Map<string, () => Response>): TestHandler {
  return (req) => {
    const route = routes.get(new URL(req.url).pathname);
    return route ? route() : Response.json({ errors: [{ code: "NOT_FOUND" }] }, { status: 404 });
  };
}

async function withCache<T>(fn: (cache: BlobCache, dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "banger-reg-" });
  try {
    await Deno.mkdir(`${dir}/dest`);
    return await fn(new BlobCache(`${dir}/blobs`), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("pullImage() works against the fake registry used by the failure tests", async () => {
  const img = await fakeImage();
  await using server = await startHttpServer(router(img.routes));
  await withCache(async (cache, dir) => {
    const result = await pullImage({
      ref: `${server.host}/test/img`,
      destDir: `${dir}/dest`,
      cache,
    });
    assertEquals(result.manifestDigest, img.manifestDigest);
    assertEquals(result.config.cmd, ["sh"]);
    assertEquals(await Deno.readTextFile(`${dir}/dest/hello`), "world");
  });
});

Deno.test("RegistryClient.getManifest() refuses manifests it cannot trust or use", async (t) => {
  const img = await fakeImage();
  const body = enc.encode(
    '{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST +
      '","config":{"mediaType":"x","digest":"sha256:' + "0".repeat(64) +
      '","size":1},"layers":[]}',
  );
  const cases: [string, string, () => Response, string][] = [
    [
      "by digest, the body hashes differently",
      img.manifestDigest,
      () => manifestResponse(body),
      "hashes to",
    ],
    [
      "by tag, Docker-Content-Digest disagrees",
      "latest",
      () => manifestResponse(body, img.manifestDigest),
      "the registry said",
    ],
    ["schema 1", "latest", () =>
      manifestResponse(
        enc.encode('{"schemaVersion":1,"name":"x","fsLayers":[]}'),
        undefined,
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
      ), "schema 1"],
    ["an unknown media type", "latest", () =>
      manifestResponse(
        enc.encode('{"schemaVersion":2}'),
        undefined,
        "application/vnd.example.thing+json",
      ), `media type "application/vnd.example.thing+json" is not supported`],
    [
      "mediaType contradicting Content-Type",
      "latest",
      () =>
        manifestResponse(body, undefined, "application/vnd.docker.distribution.manifest.v2+json"),
      "contradicts",
    ],
    ["not JSON", "latest", () => manifestResponse(enc.encode("<html>")), "not valid JSON"],
  ];
  for (const [name, ref, respond, why] of cases) {
    await t.step(name, async () => {
      await using server = await startHttpServer(
        router(new Map([[`/v2/test/img/manifests/${ref}`, respond]])),
      );
      const client = new RegistryClient({ registry: server.host, endpoint: server.host });
      await assertRejects(() => client.getManifest("test/img", ref), OciError, why);
    });
  }
  await t.step("a missing manifest is not_found with the registry's error code", async () => {
    await using server = await startHttpServer(router(new Map()));
    const client = new RegistryClient({ registry: server.host, endpoint: server.host });
    const err = await assertRejects(
      () => client.getManifest("test/img", "nope"),
      OciError,
      "NOT_FOUND",
    );
    assertEquals(err.code, "not_found");
  });
});

Deno.test("pullImage() refuses bad blobs and keeps nothing in the cache", async (t) => {
  const cases: [string, (img: FakeImage) => () => Response, string][] = [
    [
      "a digest mismatch",
      (img) => () => new Response(img.layer.map((b, i) => i === 0 ? b ^ 1 : b)),
      "hashes to",
    ],
    [
      "a truncated body",
      (img) => () => new Response(brokenBody(img.layer, 600)),
      "Cannot download blob",
    ],
    [
      "a short body without Content-Length",
      (img) => () =>
        new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(img.layer.slice(0, 600));
              c.close();
            },
          }),
        ),
      "sent 600 bytes, expected",
    ],
    [
      "a Content-Length that differs from the descriptor",
      (img) => () => new Response(img.layer.slice(0, 1024)),
      "the manifest says",
    ],
    ["a body longer than the descriptor", (img) => () =>
      new Response(
        new ReadableStream({
          start(c) {
            c.enqueue(img.layer);
            c.enqueue(new Uint8Array(10));
            c.close();
          },
        }),
      ), `more than`],
  ];
  for (const [name, make, why] of cases) {
    await t.step(name, async () => {
      const img = await fakeImage();
      img.routes.set(`/v2/test/img/blobs/${img.layerDigest}`, make(img));
      await using server = await startHttpServer(router(img.routes));
      await withCache(async (cache, dir) => {
        await assertRejects(
          () => pullImage({ ref: `${server.host}/test/img`, destDir: `${dir}/dest`, cache }),
          OciError,
          why,
        );
        const left = [...Deno.readDirSync(cache.dir)].map((e) => e.name);
        assertEquals(left.filter((n) => n.startsWith(".tmp-") || img.layerDigest.endsWith(n)), []);
        assertEquals([...Deno.readDirSync(`${dir}/dest`)], []);
      });
    });
  }
});

Deno.test("RegistryClient answers a bearer challenge, caches the token per scope and sends Basic credentials to the realm", async () => {
  const img = await fakeImage();
  const tokenRequests: { scope: string | null; service: string | null; auth: string | null }[] = [];
  await using server = await startHttpServer((req) => {
    const url = new URL(req.url);
    if (url.pathname === "/token") {
      tokenRequests.push({
        scope: url.searchParams.get("scope"),
        service: url.searchParams.get("service"),
        auth: req.headers.get("authorization"),
      });
      return Response.json({ token: "tok-1", expires_in: 300 });
    }
    if (req.headers.get("authorization") !== "Bearer tok-1") {
      return new Response("{}", {
        status: 401,
        headers: {
          "WWW-Authenticate":
            `Bearer realm="http://${url.host}/token",service="fake",scope="repository:test/img:pull"`,
        },
      });
    }
    return router(img.routes)(req);
  });
  await withCache(async (cache, dir) => {
    const creds = `${dir}/config.json`;
    await Deno.writeTextFile(
      creds,
      JSON.stringify({ auths: { [server.host]: { auth: btoa("alice:s3cret") } } }),
    );
    await pullImage({
      ref: `${server.host}/test/img`,
      destDir: `${dir}/dest`,
      cache,
      credentialsFile: creds,
    });
  });
  assertEquals(tokenRequests, [{
    scope: "repository:test/img:pull",
    service: "fake",
    auth: `Basic ${btoa("alice:s3cret")}`,
  }]);
});

Deno.test("RegistryClient keeps Authorization on same-host redirects and drops it for another host", async () => {
  const img = await fakeImage();
  await using cdn = await startHttpServer(() => new Response(img.layer));
  await using server = await startHttpServer((req) => {
    const url = new URL(req.url);
    if (req.headers.get("authorization") !== "Basic " + btoa("u:p")) {
      return new Response("{}", {
        status: 401,
        headers: { "WWW-Authenticate": 'Basic realm="x"' },
      });
    }
    if (url.pathname === `/v2/test/img/blobs/${img.layerDigest}`) {
      return Response.redirect(`http://${url.host}/same-host/${img.layerDigest}`, 307);
    }
    if (url.pathname.startsWith("/same-host/")) {
      return Response.redirect(`http://localhost:${cdn.port}/blob?sig=1`, 302);
    }
    return router(img.routes)(req);
  });
  await withCache(async (cache, dir) => {
    await pullImage({
      ref: `${server.host}/test/img`,
      destDir: `${dir}/dest`,
      cache,
      credentials: { username: "u", password: "p" },
    });
    assertEquals(await Deno.readTextFile(`${dir}/dest/hello`), "world");
  });
  assertEquals(cdn.requests.map((r) => [r.path, r.headers.get("authorization")]), [[
    "/blob?sig=1",
    null,
  ]]);
  assertEquals(server.count("/v2/test/img/manifests/latest"), 2);
  assertEquals(server.count("/same-host/"), 1);
});
