import { assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { programs, root } from "../../fixtures/requires.ts";
import { gatedTest } from "../../fixtures/requires.ts";
import { tarBytes } from "../../fixtures/tar_writer.ts";
import { TarError } from "../../../catalog/errors.ts";
import { readTar, type TarEntry } from "../../../catalog/archive/tar.ts";
import { run } from "../../../host/os/exec.ts";

type Seen = Omit<TarEntry, "body"> & { text: string };

async function readAll(bytes: Uint8Array, readBodies = true): Promise<Seen[]> {
  const out: Seen[] = [];
  for await (const entry of readTar(chunked(bytes, 333))) {
    const { body, ...rest } = entry;
    let text = "";
    if (readBodies) {
      const decoder = new TextDecoder();
      for await (const c of body) text += decoder.decode(c, { stream: true });
      text += decoder.decode();
    }
    out.push({ ...rest, text });
  }
  return out;
}

/** A stream of odd-sized chunks, so headers straddle chunk boundaries. */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + size));
      offset += size;
    },
  });
}

Deno.test("readTar() reads ustar entries with owners, setuid modes and links", async () => {
  const entries = await readAll(tarBytes([
    { path: "bin/", type: "dir", mode: 0o755 },
    { path: "bin/su", content: "x".repeat(700), mode: 0o4755, uid: 0, gid: 0 },
    { path: "home/u/f", content: "hello", uid: 1000, gid: 1001, mode: 0o600 },
    { path: "bin/sh", type: "symlink", linkName: "busybox" },
    { path: "bin/su2", type: "hardlink", linkName: "bin/su" },
    { path: "dev/null", type: "char" },
    { path: "run/fifo", type: "fifo" },
  ]));
  assertEquals(entries.map((e) => [e.path, e.type, e.mode, e.uid, e.gid, e.size, e.linkName]), [
    ["bin/", "dir", 0o755, 0, 0, 0, ""],
    ["bin/su", "file", 0o4755, 0, 0, 700, ""],
    ["home/u/f", "file", 0o600, 1000, 1001, 5, ""],
    ["bin/sh", "symlink", 0o644, 0, 0, 0, "busybox"],
    ["bin/su2", "hardlink", 0o644, 0, 0, 0, "bin/su"],
    ["dev/null", "char", 0o644, 0, 0, 0, ""],
    ["run/fifo", "fifo", 0o644, 0, 0, 0, ""],
  ]);
  assertEquals(entries[1].text, "x".repeat(700));
  assertEquals(entries[2].text, "hello");
});

Deno.test("readTar() applies pax records and GNU long names", async () => {
  const long = `${"d".repeat(120)}/${"f".repeat(120)}`;
  const entries = await readAll(tarBytes([
    { path: "short", content: "a", pax: { path: long, uid: "70000", "SCHILY.xattr.user.x": "v" } },
    { path: "gnu", content: "b", gnuLongName: true },
    { path: `${"g".repeat(150)}`, content: "c", gnuLongName: true },
    { path: "link", type: "symlink", pax: { linkpath: `/${"t".repeat(200)}` } },
    { path: "after", content: "d" },
  ]));
  assertEquals(entries.map((e) => [e.path, e.uid, e.text]), [
    [long, 70000, "a"],
    ["gnu", 0, "b"],
    ["g".repeat(150), 0, "c"],
    ["link", 0, ""],
    ["after", 0, "d"],
  ]);
  assertEquals(entries[3].linkName, `/${"t".repeat(200)}`);
  assertEquals([...entries[0].xattrs], [["user.x", new TextEncoder().encode("v")]]);
  assertEquals(entries[1].xattrs.size, 0, "xattrs belong to the entry after their header");
});

Deno.test("readTar() keeps xattr values as bytes: SCHILY raw, LIBARCHIVE base64", async () => {
  // A file capability (VFS_CAP_REVISION_2, cap_net_raw) and a value that is not UTF-8.
  const capability = new Uint8Array([1, 0, 0, 2, 0, 0x20, 0, 0, ...new Array(12).fill(0)]);
  const binary = new Uint8Array([0xff, 0x00, 0x0a, 0x3d, 0x80]);
  const [ping, other] = await readAll(tarBytes([
    {
      path: "bin/ping",
      content: "",
      pax: { "SCHILY.xattr.security.capability": capability, "SCHILY.xattr.user.b": binary },
    },
    {
      path: "other",
      content: "",
      pax: { "LIBARCHIVE.xattr.user.with%20space": btoa(String.fromCharCode(...binary)) },
    },
  ]));
  assertEquals(ping.xattrs.get("security.capability"), capability);
  assertEquals(ping.xattrs.get("user.b"), binary);
  assertEquals([...other.xattrs], [["user.with space", binary]]);
  await assertRejects(
    () => readAll(tarBytes([{ path: "x", pax: { "LIBARCHIVE.xattr.user.y": "!!not base64" } }])),
    TarError,
    'extended attribute "user.y" is not URL-encoded with a base64 value',
  );
});

Deno.test("readTar() accepts an archive that ends right after the last entry's data, as umoci writes", async () => {
  const full = tarBytes([{ path: "a", content: "x" }], { end: false });
  const entries = await readAll(full.slice(0, 513));
  assertEquals(entries.map((e) => [e.path, e.text]), [["a", "x"]]);
  await assertRejects(() => readAll(full.slice(0, 600)), TarError, "ends inside it");
});

Deno.test("readTar() skips bodies the caller does not read", async () => {
  const entries = await readAll(
    tarBytes([{ path: "a", content: "1".repeat(1500) }, { path: "b", content: "2" }]),
    false,
  );
  assertEquals(entries.map((e) => e.path), ["a", "b"]);
});

Deno.test("readTar() refuses corrupt, truncated and unsupported archives", async (t) => {
  await t.step("bad header checksum", async () => {
    const bytes = tarBytes([{ path: "a", content: "x" }]);
    bytes[10] ^= 1;
    await assertRejects(() => readAll(bytes), TarError, "bad checksum");
  });
  await t.step("archive ends inside an entry", async () => {
    const bytes = tarBytes([{ path: "a", content: "x".repeat(2000) }], { end: false });
    await assertRejects(() => readAll(bytes.slice(0, 1200)), TarError, "ends inside it");
  });
  await t.step("archive ends inside a header", async () => {
    const bytes = tarBytes([{ path: "a", content: "x" }], { end: false });
    await assertRejects(() => readAll(bytes.slice(0, 1300 - 500)), TarError, "ends inside");
  });
  await t.step("sparse entries", async () => {
    const bytes = tarBytes([{ path: "s", typeflag: "S" }]);
    await assertRejects(() => readAll(bytes), TarError, `entry type "S" is not supported`);
  });
  await t.step("malformed pax record", async () => {
    const bytes = tarBytes([{ path: "p", pax: { path: "x" } }]);
    bytes[512] = "7".charCodeAt(0);
    await assertRejects(() => readAll(bytes), TarError);
  });
  await t.step("a name that is not UTF-8", async () => {
    const bytes = tarBytes([{ path: "ab", content: "" }]);
    bytes[0] = 0xff;
    const sum = bytes.subarray(0, 512).reduce((n, v, i) => n + (i >= 148 && i < 156 ? 32 : v), 0);
    bytes.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    await assertRejects(() => readAll(bytes), TarError, "not valid UTF-8");
  });
});

gatedTest(
  "readTar() reads the file capability GNU tar --xattrs stores for a setcap'd file (root)",
  [root(), programs("tar", "setcap", "getcap")],
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.mkdir(`${dir}/src/bin`, { recursive: true });
      await Deno.writeTextFile(`${dir}/src/bin/ping`, "#!/bin/sh\n");
      await run("setcap", ["cap_net_raw+ep", `${dir}/src/bin/ping`]);
      await run("tar", [
        "--xattrs",
        "--xattrs-include=*",
        "-C",
        `${dir}/src`,
        "-cf",
        `${dir}/l.tar`,
        "bin",
      ]);
      const ping = (await readAll(await Deno.readFile(`${dir}/l.tar`))).find((e) =>
        e.path === "bin/ping"
      );
      // VFS_CAP_REVISION_2, effective, permitted = 1 << CAP_NET_RAW (13): bytes 4..7.
      assertEquals(
        ping?.xattrs.get("security.capability")?.subarray(0, 8),
        new Uint8Array([1, 0, 0, 2, 0, 0x20, 0, 0]),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gatedTest(
  "readTar() reads archives made by GNU tar in gnu and pax formats",
  [programs("tar")],
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const deep = `${dir}/src/${"x".repeat(90)}/${"y".repeat(90)}`;
      await Deno.mkdir(deep, { recursive: true });
      await Deno.writeTextFile(`${deep}/${"z".repeat(120)}`, "deep");
      await Deno.symlink("x".repeat(90), `${dir}/src/${"l".repeat(110)}`);
      for (const format of ["gnu", "pax"]) {
        await run("tar", [
          "-C",
          `${dir}/src`,
          `--format=${format}`,
          "-cf",
          `${dir}/${format}.tar`,
          ".",
        ]);
        const entries = await readAll(await Deno.readFile(`${dir}/${format}.tar`));
        const file = entries.find((e) => e.path.endsWith("z".repeat(120)));
        assertEquals(file?.path, `./${"x".repeat(90)}/${"y".repeat(90)}/${"z".repeat(120)}`);
        assertEquals(file?.text, "deep");
        const link = entries.find((e) => e.type === "symlink");
        assertEquals([link?.path, link?.linkName], [`./${"l".repeat(110)}`, "x".repeat(90)]);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** A tree with what tar formats differ on: long paths, non-ASCII, links, modes, ids. */
async function conformanceTree(root: string, long: boolean): Promise<void> {
  await Deno.mkdir(`${root}/sub`, { recursive: true });
  await Deno.writeTextFile(`${root}/a.txt`, "hi\n");
  await Deno.chmod(`${root}/a.txt`, 0o4755);
  await Deno.writeTextFile(`${root}/ünï.txt`, "x");
  await Deno.chown(`${root}/ünï.txt`, 70000, 70001);
  await Deno.chmod(`${root}/sub`, 0o750);
  await Deno.symlink("../a.txt", `${root}/sub/link`);
  await Deno.link(`${root}/a.txt`, `${root}/hard`);
  await Deno.writeFile(`${root}/empty`, new Uint8Array());
  const big = new Uint8Array(100_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 8)) & 0xff;
  await Deno.writeFile(`${root}/big.bin`, big);
  if (long) {
    // Past ustar's 100-byte name field, within its 155-byte prefix: every format but v7.
    const dir = `${root}/${"d".repeat(70)}/${"e".repeat(70)}`;
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}/${"f".repeat(50)}`, "deep\n");
  }
}

/** What a reader should see for `root`: one row per path, hardlinks by inode. */
async function expectedRows(root: string): Promise<Map<string, string>> {
  const rows = new Map<string, string>();
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${root}${rel}`)) {
      const path = `${rel}/${e.name}`;
      const info = await Deno.lstat(`${root}${path}`);
      const mode = (info.mode ?? 0) & 0o7777;
      const kind = info.isSymlink ? "symlink" : info.isDirectory ? "dir" : "file";
      const body = info.isFile
        ? await Deno.readTextFile(`${root}${path}`).then((t) => t.length)
        : 0;
      const link = info.isSymlink ? await Deno.readLink(`${root}${path}`) : "";
      rows.set(
        path.slice(1),
        `${kind} ${mode.toString(8)} ${info.uid}:${info.gid} ${body} ${link}`,
      );
      if (info.isDirectory) await walk(path);
    }
  };
  await walk("");
  return rows;
}

gatedTest(
  "readTar() reads every format GNU tar and bsdtar write: v7, ustar, oldgnu, gnu, pax (root)",
  [root(), programs("tar", "bsdtar")],
  async (t) => {
    const writers: [string, string, boolean, (src: string, out: string) => string[]][] = [
      ["tar", "v7", false, (src, out) => ["--format=v7", "-C", src, "-cf", out, "."]],
      ["tar", "ustar", true, (src, out) => ["--format=ustar", "-C", src, "-cf", out, "."]],
      ["tar", "oldgnu", true, (src, out) => ["--format=oldgnu", "-C", src, "-cf", out, "."]],
      ["tar", "gnu", true, (src, out) => ["--format=gnu", "-C", src, "-cf", out, "."]],
      ["tar", "posix", true, (src, out) => ["--format=posix", "-C", src, "-cf", out, "."]],
      ["bsdtar", "v7", false, (src, out) => ["--format", "v7", "-C", src, "-cf", out, "."]],
      ["bsdtar", "ustar", true, (src, out) => ["--format", "ustar", "-C", src, "-cf", out, "."]],
      ["bsdtar", "gnutar", true, (src, out) => ["--format", "gnutar", "-C", src, "-cf", out, "."]],
      ["bsdtar", "pax", true, (src, out) => ["--format", "pax", "-C", src, "-cf", out, "."]],
    ];
    const dir = await Deno.makeTempDir();
    try {
      for (const long of [false, true]) await conformanceTree(`${dir}/tree-${long}`, long);
      for (const [tool, format, long, args] of writers) {
        await t.step(`${tool} --format ${format}`, async () => {
          const src = `${dir}/tree-${long}`;
          const out = `${dir}/${tool}-${format}.tar`;
          await run(tool, args(src, out));
          const seen = new Map<string, string>();
          const hardlinks: [string, string][] = [];
          for (const e of await readAll(await Deno.readFile(out))) {
            const path = e.path.replace(/^\.\//, "").replace(/\/$/, "");
            if (path === "." || path === "") continue;
            if (e.type === "hardlink") {
              hardlinks.push([path, e.linkName.replace(/^\.\//, "")]);
              continue;
            }
            const mode = (e.mode & 0o7777).toString(8);
            const size = e.type === "file" ? e.text.length : 0;
            seen.set(path, `${e.type} ${mode} ${e.uid}:${e.gid} ${size} ${e.linkName}`);
          }
          const expected = await expectedRows(src);
          // A hardlink is the same inode as its target: it shows as the target's row.
          for (const [path, target] of hardlinks) {
            const row = seen.get(target);
            if (row !== undefined) seen.set(path, row);
          }
          assertEquals(new Map([...seen].sort()), new Map([...expected].sort()));
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
