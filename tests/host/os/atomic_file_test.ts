import { assert, assertEquals } from "../../fixtures/assert.ts";
import { writeFileAtomic, writeJsonAtomic } from "../../../host/os/atomic_file.ts";

Deno.test("writeFileAtomic() never shows a reader a torn file, and a reader keeps the inode it opened", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/shared.json`;
    const body = (n: number) => JSON.stringify({ n, pad: "x".repeat(256 * 1024) });
    await writeFileAtomic(path, body(0));
    const early = await Deno.open(path);
    // Many writers and readers at once: every read must parse as one whole version.
    const writers = Array.from({ length: 20 }, (_, i) => writeFileAtomic(path, body(i + 1)));
    const reads: number[] = [];
    const readers = Array.from({ length: 40 }, async () => {
      const text = await Deno.readTextFile(path);
      reads.push(JSON.parse(text).n);
    });
    await Promise.all([...writers, ...readers]);
    assertEquals(reads.length, 40);
    const old = JSON.parse(
      new TextDecoder().decode(await new Response(early.readable).arrayBuffer()),
    );
    assertEquals(old.n, 0, "the reader that opened before the writes still reads the old inode");
    const left = [...Deno.readDirSync(dir)].map((e) => e.name);
    assertEquals(left, ["shared.json"], "no temp file is left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeJsonAtomic() writes pretty JSON with the requested mode", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeJsonAtomic(`${dir}/m.json`, { a: 1 }, { mode: 0o644 });
    assertEquals(await Deno.readTextFile(`${dir}/m.json`), '{\n  "a": 1\n}\n');
    assertEquals(((await Deno.stat(`${dir}/m.json`)).mode ?? 0) & 0o777, 0o644);
    await writeJsonAtomic(`${dir}/m.json`, { a: 2 });
    assert((await Deno.readTextFile(`${dir}/m.json`)).includes("2"));
    assertEquals(
      ((await Deno.stat(`${dir}/m.json`)).mode ?? 0) & 0o777,
      0o600,
      "the default mode is private",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
