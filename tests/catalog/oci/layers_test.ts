import { assert, assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { isRoot } from "../../fixtures/requires.ts";
import { tarBytes, type TarSpec } from "../../fixtures/tar_writer.ts";
import { LayerError } from "../../../catalog/errors.ts";
import { LayerApplier } from "../../../catalog/oci/layers.ts";
import { readTar } from "../../../catalog/archive/tar.ts";

/** A temp dir holding `root/` (the target) and `outside/` (must never change). */
async function sandbox(): Promise<{ root: string; outside: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "banger-layers-" });
  await Deno.mkdir(`${dir}/root`);
  await Deno.mkdir(`${dir}/outside`);
  await Deno.writeTextFile(`${dir}/outside/secret`, "keep");
  return {
    root: `${dir}/root`,
    outside: `${dir}/outside`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function apply(root: string, ...layers: TarSpec[][]): Promise<LayerApplier> {
  const applier = new LayerApplier(root);
  for (const [i, layer] of layers.entries()) {
    await applier.apply(readTar(new Blob([tarBytes(layer)]).stream()), `layer${i}`);
  }
  applier.finish();
  return applier;
}

async function tree(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${root}${rel}`)) {
    const path = `${rel}/${e.name}`;
    out.push(path);
    if (e.isDirectory) out.push(...await tree(root, path));
  }
  return out.sort();
}

async function outsideUntouched(outside: string): Promise<void> {
  assertEquals(await tree(outside), ["/secret"]);
  assertEquals(await Deno.readTextFile(`${outside}/secret`), "keep");
  const parent = outside.replace(/\/outside$/, "");
  assertEquals((await tree(parent)).filter((p) => !p.startsWith("/root")), [
    "/outside",
    "/outside/secret",
  ]);
}

const base: TarSpec[] = [
  { path: "etc/", type: "dir" },
  { path: "etc/keep", content: "k" },
  { path: "etc/gone", content: "g" },
  { path: "opt/", type: "dir" },
  { path: "opt/old/", type: "dir" },
  { path: "opt/old/file", content: "o" },
  { path: "opt/lower", content: "l" },
  { path: "var/cache/", type: "dir" },
  { path: "var/cache/big/x", content: "x" },
];

Deno.test("LayerApplier.apply() whiteouts delete lower files and trees and are never written", async () => {
  await using box = await sandbox();
  const applier = await apply(box.root, base, [
    { path: "etc/.wh.gone", content: "" },
    { path: "var/cache/.wh.big", content: "" },
  ]);
  assertEquals(await tree(box.root), [
    "/etc",
    "/etc/keep",
    "/opt",
    "/opt/lower",
    "/opt/old",
    "/opt/old/file",
    "/var",
    "/var/cache",
  ]);
  assertEquals(applier.metadata.has("/etc/gone"), false);
  assertEquals(applier.metadata.has("/var/cache/big/x"), false);
  assertEquals(applier.metadata.has("/var/cache/big"), false);
});

Deno.test("LayerApplier.apply() opaque dirs clear lower content wherever the marker sits in the layer", async (t) => {
  for (const position of ["first", "last"]) {
    await t.step(`marker ${position}`, async () => {
      await using box = await sandbox();
      const upper: TarSpec[] = [
        { path: "opt/", type: "dir", mode: 0o750 },
        { path: "opt/new", content: "n" },
        { path: "opt/old/", type: "dir" },
        { path: "opt/old/fresh", content: "f" },
      ];
      const marker: TarSpec = { path: "opt/.wh..wh..opq", content: "" };
      const layer = position === "first" ? [marker, ...upper] : [...upper, marker];
      const applier = await apply(box.root, base, layer);
      assertEquals((await tree(box.root)).filter((p) => p.startsWith("/opt")), [
        "/opt",
        "/opt/new",
        "/opt/old",
        "/opt/old/fresh",
      ]);
      assertEquals(applier.metadata.get("/opt")?.mode, 0o750);
      assertEquals(applier.metadata.has("/opt/lower"), false);
    });
  }
});

Deno.test("LayerApplier.apply() a whiteout never hides an entry of its own layer", async () => {
  await using box = await sandbox();
  await apply(box.root, base, [
    { path: "etc/gone", content: "new" },
    { path: "etc/.wh.gone", content: "" },
  ]);
  assertEquals(await Deno.readTextFile(`${box.root}/etc/gone`), "new");
});

Deno.test("LayerApplier.apply() replaces files and dirs by the layer rules", async (t) => {
  await t.step("a file replaces a directory tree", async () => {
    await using box = await sandbox();
    const applier = await apply(box.root, base, [{ path: "opt/old", content: "now a file" }]);
    assertEquals(await Deno.readTextFile(`${box.root}/opt/old`), "now a file");
    assertEquals(applier.metadata.has("/opt/old/file"), false);
  });
  await t.step("a directory replaces a file", async () => {
    await using box = await sandbox();
    await apply(box.root, base, [{ path: "etc/keep/", type: "dir" }]);
    assert((await Deno.lstat(`${box.root}/etc/keep`)).isDirectory);
  });
  await t.step(
    "a directory over a directory keeps children and takes the new attributes",
    async () => {
      await using box = await sandbox();
      const applier = await apply(box.root, base, [
        { path: "opt/", type: "dir", mode: 0o700, uid: 5, gid: 6 },
      ]);
      assertEquals(await Deno.readTextFile(`${box.root}/opt/lower`), "l");
      const m = applier.metadata.get("/opt");
      assertEquals([m?.mode, m?.uid, m?.gid], [0o700, 5, 6]);
      assertEquals(((await Deno.stat(`${box.root}/opt`)).mode ?? 0) & 0o7777, 0o700);
    },
  );
  await t.step("a symlink replaces a file without touching its old target", async () => {
    await using box = await sandbox();
    await apply(box.root, base, [{ path: "etc/keep", type: "symlink", linkName: "/etc/gone" }]);
    assertEquals(await Deno.readLink(`${box.root}/etc/keep`), "/etc/gone");
    assertEquals(await Deno.readTextFile(`${box.root}/etc/gone`), "g");
  });
});

Deno.test("LayerApplier records owners, modes, links and skipped devices in the ownership map", async () => {
  await using box = await sandbox();
  const applier = await apply(box.root, [
    { path: "./", type: "dir", mode: 0o755 },
    { path: "usr/bin/sudo", content: "s", mode: 0o4755 },
    { path: "usr/bin/wall", content: "w", mode: 0o2755, gid: 5 },
    { path: "tmp/", type: "dir", mode: 0o1777 },
    { path: "home/u/.profile", content: "p", uid: 1000, gid: 1000, mode: 0o600 },
    { path: "bin", type: "symlink", linkName: "usr/bin" },
    { path: "usr/bin/sudoedit", type: "hardlink", linkName: "usr/bin/sudo" },
    { path: "dev/null", type: "char" },
    { path: "run/initctl", type: "fifo" },
  ]);
  const m = (p: string) => applier.metadata.get(p);
  assertEquals(m("/usr/bin/sudo"), {
    uid: 0,
    gid: 0,
    mode: 0o4755,
    type: "file",
    mtime: 1700000000,
  });
  assertEquals(m("/usr/bin/wall")?.mode, 0o2755);
  assertEquals(m("/tmp")?.mode, 0o1777);
  assertEquals([m("/home/u/.profile")?.uid, m("/home/u/.profile")?.gid], [1000, 1000]);
  assertEquals(m("/home"), { uid: 0, gid: 0, mode: 0o755, type: "dir", mtime: 0 });
  assertEquals([m("/bin")?.type, m("/bin")?.linkTarget], ["symlink", "usr/bin"]);
  assertEquals([m("/usr/bin/sudoedit")?.type, m("/usr/bin/sudoedit")?.linkTarget], [
    "hardlink",
    "/usr/bin/sudo",
  ]);
  assertEquals(m("/usr/bin/sudoedit")?.mode, 0o4755);
  assertEquals(applier.skipped, [
    { path: "/dev/null", type: "char" },
    { path: "/run/initctl", type: "fifo" },
  ]);
  assertEquals(m("/dev/null"), undefined);
  const sudo = await Deno.lstat(`${box.root}/usr/bin/sudo`);
  assertEquals((sudo.mode ?? 0) & 0o7777, 0o4755);
  assertEquals(sudo.ino, (await Deno.lstat(`${box.root}/usr/bin/sudoedit`)).ino);
  assertEquals(((await Deno.lstat(`${box.root}/tmp`)).mode ?? 0) & 0o7777, 0o1777);
  if (isRoot) {
    const profile = await Deno.lstat(`${box.root}/home/u/.profile`);
    assertEquals([profile.uid, profile.gid], [1000, 1000]);
  }
});

Deno.test("LayerApplier.finish() turns a hardlink whose target was replaced into a file", async () => {
  await using box = await sandbox();
  const applier = await apply(
    box.root,
    [{ path: "a", content: "1" }, { path: "b", type: "hardlink", linkName: "a" }],
    [{ path: "a", content: "2" }],
  );
  assertEquals(applier.metadata.get("/b")?.type, "file");
  assertEquals(await Deno.readTextFile(`${box.root}/b`), "1");
});

Deno.test("LayerApplier.apply() refuses hostile entries and writes nothing outside the root", async (t) => {
  const cases: [string, TarSpec[], string][] = [
    ["a ../ path", [{ path: "../outside/secret", content: "pwned" }], `contains ".."`],
    ["a nested ../ path", [{ path: "a/../../outside/x", content: "p" }], `contains ".."`],
    ["an absolute path", [{ path: "/etc/passwd", content: "p" }], "it is absolute"],
    ["a write through an absolute symlink", [
      { path: "evil", type: "symlink", linkName: "/" },
      { path: "evil/etc/passwd", content: "p" },
    ], `parent "/evil" is a symlink`],
    ["a write through a relative symlink", [
      { path: "d/", type: "dir" },
      { path: "d/up", type: "symlink", linkName: ".." },
      { path: "d/up/x", content: "p" },
    ], `parent "/d/up" is a symlink`],
    ["a symlink escaping the root", [
      { path: "a/esc", type: "symlink", linkName: "../../outside" },
    ], "points outside the root"],
    ["a hardlink to outside", [
      { path: "hl", type: "hardlink", linkName: "../outside/secret" },
    ], `contains ".."`],
    ["a hardlink to an absolute path", [
      { path: "hl", type: "hardlink", linkName: "/etc/passwd" },
    ], "it is absolute"],
    ["a hardlink to a missing file", [
      { path: "hl", type: "hardlink", linkName: "nope" },
    ], "does not exist"],
    ["a hardlink through a symlink", [
      { path: "s", type: "symlink", linkName: "/" },
      { path: "hl", type: "hardlink", linkName: "s/etc/passwd" },
    ], "does not exist"],
    ["a bare whiteout", [{ path: "etc/.wh.", content: "" }], "whiteout without a name"],
    ["a newline in a name", [{ path: "etc/a\nb", content: "" }], "control character"],
    ["a control character in a name", [{ path: "x\x1b[31m", content: "" }], "control character"],
    ["a newline in a symlink target", [
      { path: "l", type: "symlink", linkName: "a\nb" },
    ], "empty or unsafe"],
    ["a file over the root", [{ path: "./", content: "x" }], "the root must be a directory"],
  ];
  for (const [name, layer, why] of cases) {
    await t.step(name, async () => {
      await using box = await sandbox();
      const err = await assertRejects(() => apply(box.root, layer), LayerError, why);
      assertEquals(err.code, "invalid_argument");
      await outsideUntouched(box.outside);
    });
  }
});

Deno.test("LayerApplier.apply() treats a whiteout under a symlink as nothing to remove", async () => {
  await using box = await sandbox();
  // an absolute target is fine as a link (it resolves inside the guest), but on the host
  // it points at the outside dir: the whiteout must not follow it
  await apply(box.root, [{ path: "link", type: "symlink", linkName: box.outside }], [
    { path: "link/.wh.secret", content: "" },
    { path: "link/.wh..wh..opq", content: "" },
  ]);
  await outsideUntouched(box.outside);
  assertEquals(await Deno.readLink(`${box.root}/link`), box.outside);
});

Deno.test("LayerApplier stops an image that expands past its byte or entry limit, naming the layer and the setting", async () => {
  await using s = await sandbox();
  const stream = (specs: TarSpec[]) => readTar(new Blob([tarBytes(specs)]).stream());
  const bytes = new LayerApplier(s.root, { maxBytes: 1 << 20 });
  await bytes.apply(stream([{ path: "small", content: new Uint8Array(512 << 10) }]), "layer0");
  const tooBig = await assertRejects(
    () => bytes.apply(stream([{ path: "big", content: new Uint8Array(1 << 20) }]), "layer1"),
    LayerError,
    'Cannot apply layer "layer1": the image expands to more than 1048576 bytes',
  );
  assertEquals([tooBig.code, tooBig.hint?.includes("max_image_bytes")], ["too_large", true]);

  const entries = new LayerApplier(s.root, { maxEntries: 3 });
  const many = Array.from({ length: 5 }, (_, i) => ({ path: `e${i}`, content: "x" }));
  const err = await assertRejects(
    () => entries.apply(stream(many), "layer2"),
    LayerError,
    "more than 3 entries",
  );
  assertEquals(err.hint?.includes("max_image_entries"), true);
});

Deno.test("LayerApplier records file capabilities and user.* xattrs, and the upper layer's win", async () => {
  await using s = await sandbox();
  const cap = new Uint8Array([1, 0, 0, 2, 0, 0x20, 0, 0, ...new Array(12).fill(0)]);
  const applier = await apply(
    s.root,
    [
      {
        path: "bin/ping",
        content: "x",
        pax: {
          "SCHILY.xattr.security.capability": cap,
          "SCHILY.xattr.security.selinux": "label",
          "SCHILY.xattr.trusted.t": "t",
        },
      },
      { path: "bin/tool", content: "x", pax: { "SCHILY.xattr.user.a": "1" } },
      { path: "bin/alias", type: "symlink", linkName: "ping", pax: { "SCHILY.xattr.user.a": "1" } },
    ],
    // A rewritten file carries only what its new entry says.
    [{ path: "bin/tool", content: "y" }],
  );
  assertEquals(applier.metadata.get("/bin/ping")?.xattrs, {
    "security.capability": btoa(String.fromCharCode(...cap)),
  });
  assertEquals(applier.metadata.get("/bin/tool")?.xattrs, undefined);
  assertEquals(applier.metadata.get("/bin/alias")?.xattrs, undefined, "no xattrs on symlinks");
});
