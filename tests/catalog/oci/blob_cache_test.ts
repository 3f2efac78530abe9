import { assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { BlobCache } from "../../../catalog/oci/blob_cache.ts";
import { OciError } from "../../../catalog/errors.ts";
import { sha256Digest } from "../../../catalog/oci/registry.ts";

const MEDIA = "application/vnd.oci.image.layer.v1.tar";

async function blob(text: string) {
  const bytes = new TextEncoder().encode(text);
  return {
    bytes,
    descriptor: { mediaType: MEDIA, digest: await sha256Digest(bytes), size: bytes.length },
  };
}

/** An opener whose stream sends the first byte, then waits until released or cancelled. */
function gatedOpener(bytes: Uint8Array) {
  const release = Promise.withResolvers<void>();
  const started = Promise.withResolvers<void>();
  let opens = 0;
  let cancelled = false;
  const open = (signal: AbortSignal) => {
    opens++;
    started.resolve();
    let sent = false;
    return Promise.resolve(
      new ReadableStream<Uint8Array>({
        async pull(c) {
          if (!sent) {
            sent = true;
            return c.enqueue(bytes.slice(0, 1));
          }
          const aborted = new Promise<void>((resolve) =>
            signal.addEventListener("abort", () => resolve())
          );
          await Promise.race([release.promise, aborted]);
          if (signal.aborted) {
            cancelled = true;
            return c.error(signal.reason);
          }
          c.enqueue(bytes.slice(1));
          c.close();
        },
      }),
    );
  };
  return {
    open,
    release: () => release.resolve(),
    started: started.promise,
    get opens() {
      return opens;
    },
    get cancelled() {
      return cancelled;
    },
  };
}

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "banger-blobs-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("BlobCache.ensure() shares one download between concurrent callers and caches it", async () => {
  await withDir(async (dir) => {
    const cache = new BlobCache(dir);
    const { bytes, descriptor } = await blob("shared content");
    const gate = gatedOpener(bytes);
    const a = cache.ensure(descriptor, gate.open);
    const b = cache.ensure(descriptor, gate.open);
    await gate.started;
    gate.release();
    assertEquals(await a, cache.path(descriptor.digest));
    assertEquals(await b, cache.path(descriptor.digest));
    assertEquals(gate.opens, 1);
    await cache.ensure(descriptor, () => Promise.reject(new Error("must not open")));
    assertEquals(await Deno.readTextFile(cache.path(descriptor.digest)), "shared content");
    assertEquals(names(dir), [descriptor.digest.slice(7)]);
  });
});

Deno.test("BlobCache.ensure() keeps downloading for the remaining waiter when one cancels", async () => {
  await withDir(async (dir) => {
    const cache = new BlobCache(dir);
    const { bytes, descriptor } = await blob("for the survivor");
    const gate = gatedOpener(bytes);
    const quitter = new AbortController();
    const a = cache.ensure(descriptor, gate.open, { signal: quitter.signal });
    const b = cache.ensure(descriptor, gate.open);
    await gate.started;
    quitter.abort();
    const err = await assertRejects(() => a, OciError, "cancelled");
    assertEquals(err.code, "cancelled");
    gate.release();
    assertEquals(await b, cache.path(descriptor.digest));
    assertEquals(gate.cancelled, false);
  });
});

Deno.test("BlobCache.ensure() cancelled by its last waiter stops the download and removes the temp file", async () => {
  await withDir(async (dir) => {
    const cache = new BlobCache(dir);
    const { bytes, descriptor } = await blob("never finished");
    const gate = gatedOpener(bytes);
    const controller = new AbortController();
    const a = cache.ensure(descriptor, gate.open, {
      signal: controller.signal,
      onProgress: (done) => done > 0 && controller.abort(),
    });
    await assertRejects(() => a, OciError, "cancelled");
    assertEquals(gate.cancelled, true);
    assertEquals(names(dir), []);
  });
});

Deno.test("BlobCache.ensure() refuses content whose digest or size is wrong and keeps nothing", async (t) => {
  const { descriptor } = await blob("expected");
  const cases: [string, string, string][] = [
    ["other bytes of the same size", "EXPECTED", "hashes to"],
    ["fewer bytes", "exp", "sent 3 bytes, expected 8"],
    ["more bytes", "expected!", "more than 8 bytes"],
  ];
  for (const [name, served, why] of cases) {
    await t.step(name, async () => {
      await withDir(async (dir) => {
        const cache = new BlobCache(dir);
        const open = () => Promise.resolve(new Blob([served]).stream());
        const err = await assertRejects(() => cache.ensure(descriptor, open), OciError, why);
        assertEquals(err.code, "unavailable");
        assertEquals(names(dir), []);
      });
    });
  }
});

Deno.test("BlobCache.has() trusts only files with the descriptor's size", async () => {
  await withDir(async (dir) => {
    const cache = new BlobCache(dir);
    const { descriptor } = await blob("abc");
    assertEquals(await cache.has(descriptor), false);
    await Deno.writeTextFile(cache.path(descriptor.digest), "abcd");
    assertEquals(await cache.has(descriptor), false);
    await Deno.writeTextFile(cache.path(descriptor.digest), "abc");
    assertEquals(await cache.has(descriptor), true);
  });
});

Deno.test("BlobCache.prune() removes cached blobs but never one a pull in flight holds", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bgb-" });
  try {
    const cache = new BlobCache(dir);
    const blob = async (text: string) => {
      const bytes = new TextEncoder().encode(text);
      const d = { digest: await sha256Digest(bytes), size: bytes.length, mediaType: "x" };
      await cache.ensure(d, () => Promise.resolve(ReadableStream.from([bytes])));
      return d.digest;
    };
    const [held, free] = [await blob("layer held by a pull"), await blob("a spare layer")];
    {
      using _pull = cache.hold([held]);
      assertEquals((await cache.prune(true)).files, 1, "a dry run counts only the free blob");
      assertEquals((await cache.prune(false)).files, 1);
      assertEquals(await Deno.stat(cache.path(held)).then(() => true), true, "held blob kept");
      assertEquals(await Deno.stat(cache.path(free)).then(() => true, () => false), false);
    }
    assertEquals((await cache.prune(false)).files, 1, "released, it goes too");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
