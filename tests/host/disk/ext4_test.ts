import { assert, assertEquals, assertRejects, assertThrows } from "../../fixtures/assert.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { run } from "../../../host/os/exec.ts";
import {
  ancestorsOf,
  checkGuestPath,
  debugfsProblems,
  dirsToProbe,
  type ListedEntry,
  parseListings,
  quoteDebugfsArg,
  renderListScript,
  renderOwnershipScript,
  renderWriteScript,
} from "../../../host/disk/_debugfs.ts";
import {
  applyExt4Ownership,
  checkExt4,
  createExt4,
  dumpExt4,
  Ext4Error,
  growExt4,
  readExt4File,
  writeExt4,
} from "../../../host/disk/ext4.ts";

const E2FS = [root(), programs("mkfs.ext4", "debugfs", "e2fsck", "resize2fs")];

Deno.test("quoteDebugfsArg() double-quotes and doubles embedded quotes", () => {
  assertEquals(quoteDebugfsArg("/a b"), '"/a b"');
  assertEquals(quoteDebugfsArg('/q"x'), '"/q""x"');
  assertEquals(quoteDebugfsArg("/t\\u'<3> é"), `"/t\\u'<3> é"`);
  assertThrows(() => quoteDebugfsArg("a\tb"), Ext4Error, "0x09");
});

Deno.test("checkGuestPath() refuses what debugfs cannot encode or would misread", async (t) => {
  for (
    const [bad, why] of [
      ["relative", "absolute"],
      ["/a\nb", "0x0a"],
      ["/a\rb", "0x0d"],
      ["/a\0b", "0x00"],
      ["/a\x7fb", "0x7f"],
      ["/a//b", "empty"],
      ["/a/./b", '"."'],
      ["/a/../b", '".."'],
      ["/" + "n".repeat(256), "255 bytes"],
    ]
  ) {
    await t.step(JSON.stringify(bad), () => {
      const err = assertThrows(() => checkGuestPath(bad), Ext4Error, why);
      assertEquals(err.code, "invalid_argument");
    });
  }
  await t.step("accepts spaces, quotes, tabs are refused, 255-byte names pass", () => {
    assertEquals(checkGuestPath('/a b/"q"/'), '/a b/"q"');
    assertEquals(checkGuestPath("/" + "n".repeat(255)), "/" + "n".repeat(255));
    assertThrows(() => checkGuestPath("/a\tb"), Ext4Error, "0x09");
  });
});

Deno.test("ancestorsOf() lists the parents outermost first", () => {
  assertEquals(ancestorsOf("/a/b/c"), ["/a", "/a/b"]);
  assertEquals(ancestorsOf("/a"), []);
});

Deno.test("dirsToProbe() lists / and every ancestor once, shallowest first", () => {
  assertEquals(
    dirsToProbe([
      { kind: "writeFile", path: "/x/y/z", text: "" },
      { kind: "mkdir", path: "/x/w" },
      { kind: "remove", path: "/top" },
    ]),
    ["/", "/x", "/x/y"],
  );
  assertThrows(() => dirsToProbe([{ kind: "mkdir", path: "/" }]), Ext4Error);
  assertThrows(() => dirsToProbe([{ kind: "mkdir", path: "/a", mode: 0o10000 }]), Ext4Error);
  assertThrows(() => dirsToProbe([{ kind: "symlink", path: "/a", target: "x\ny" }]), Ext4Error);
});

Deno.test("parseListings() splits ls -p output per directory; missing dirs are absent", () => {
  const out = [
    'debugfs: ls -p "/"',
    "/2/040755/0/0/.//",
    "/2/040755/0/0/..//",
    "/12/040700/0/0/.ssh//",
    "/13/100644/1000/1000/a b/6/",
    'debugfs: ls -p "/missing"',
    'debugfs: ls -p "/.ssh"',
    "/12/040700/0/0/.//",
    "/2/040755/0/0/..//",
  ].join("\n");
  const map = parseListings(out, ["/", "/missing", "/.ssh"]);
  assertEquals(map.get("/")?.map((e) => e.name), [".", "..", ".ssh", "a b"]);
  assertEquals(map.get("/")?.[3], { name: "a b", mode: 0o100644, uid: 1000, gid: 1000 });
  assertEquals(map.has("/missing"), false);
  assertEquals(map.get("/.ssh")?.length, 2);
  assertEquals(renderListScript(["/", "/a b"]), 'ls -p "/"\nls -p "/a b"\n');
});

const dir = (name: string, mode = 0o040755): ListedEntry => ({ name, mode, uid: 0, gid: 0 });
const file = (name: string): ListedEntry => ({ name, mode: 0o100644, uid: 0, gid: 0 });

Deno.test("renderWriteScript() renders exact commands with type bits in every mode", () => {
  const listings = new Map([["/", [dir("."), dir(".."), dir("etc")]], ["/etc", [
    dir("."),
    dir(".."),
    file("hostname"),
  ]]]);
  const script = renderWriteScript(
    [
      { kind: "mkdir", path: "/root/.ssh", mode: 0o700 },
      { kind: "writeFile", path: "/root/.ssh/authorized_keys", text: "k", mode: 0o600 },
      { kind: "writeFile", path: "/etc/hostname", text: "h", uid: 5, gid: 6 },
      { kind: "symlink", path: "/etc/localtime", target: "/usr/share/zoneinfo/UTC" },
      { kind: "setAttrs", path: "/etc", mode: 0o711 },
      { kind: "remove", path: "/etc/hostname" },
    ],
    listings,
    [undefined, "/tmp/s/1", "/tmp/s/2", undefined, undefined, undefined],
  );
  assertEquals(
    script,
    [
      'mkdir "/root"',
      'mkdir "/root/.ssh"',
      'sif "/root/.ssh" mode 040700',
      'sif "/root/.ssh" uid 0',
      'sif "/root/.ssh" gid 0',
      'write "/tmp/s/1" "/root/.ssh/authorized_keys"',
      'sif "/root/.ssh/authorized_keys" mode 0100600',
      'sif "/root/.ssh/authorized_keys" uid 0',
      'sif "/root/.ssh/authorized_keys" gid 0',
      'rm "/etc/hostname"',
      'write "/tmp/s/2" "/etc/hostname"',
      'sif "/etc/hostname" mode 0100644',
      'sif "/etc/hostname" uid 5',
      'sif "/etc/hostname" gid 6',
      'symlink "/etc/localtime" "/usr/share/zoneinfo/UTC"',
      'sif "/etc/localtime" uid 0',
      'sif "/etc/localtime" gid 0',
      'sif "/etc" mode 040711',
      'rm "/etc/hostname"',
      "",
    ].join("\n"),
  );
});

Deno.test("renderWriteScript() never re-creates an existing directory", () => {
  const listings = new Map([["/", [dir("."), dir(".."), dir("a")]]]);
  assertEquals(
    renderWriteScript([{ kind: "mkdir", path: "/a", mode: 0o755 }], listings, []),
    'sif "/a" mode 040755\nsif "/a" uid 0\nsif "/a" gid 0\n',
  );
});

Deno.test("renderWriteScript() refuses a file where a directory is needed and the reverse", () => {
  const listings = new Map([["/", [dir("."), file("f"), dir("d")]]]);
  const e1 = assertThrows(
    () => renderWriteScript([{ kind: "writeFile", path: "/f/x", text: "" }], listings, ["/s"]),
    Ext4Error,
    'Cannot write file "/f": a file is in the way',
  );
  assertEquals(e1.code, "conflict");
  assertThrows(
    () => renderWriteScript([{ kind: "writeFile", path: "/d", text: "" }], listings, ["/s"]),
    Ext4Error,
    "a directory is in the way",
  );
  assertThrows(
    () => renderWriteScript([{ kind: "setAttrs", path: "/nope", mode: 1 }], listings, []),
    Ext4Error,
    "does not exist",
  );
});

Deno.test("renderWriteScript() escapes quotes so a name cannot inject a command", () => {
  const listings = new Map([["/", [dir(".")]]]);
  const script = renderWriteScript(
    [{ kind: "writeFile", path: '/x" ; rm "etc', text: "" }],
    listings,
    ["/s"],
  );
  assertEquals(script.split("\n")[0], 'write "/s" "/x"" ; rm ""etc"');
});

Deno.test("renderOwnershipScript() sets each xattr from its value file, refusing odd names", () => {
  const entry = { path: "/bin/ping", kind: "file" as const, uid: 0, gid: 0, mode: 0o755 };
  const xattrs = [{ name: "security.capability", base64: "AQAAAg==" }];
  assertEquals(
    renderOwnershipScript([{ ...entry, xattrs }], (i, j) => `/tmp/x/${i}.${j}`).split("\n")[3],
    'ea_set "-f" "/tmp/x/0.0" "/bin/ping" "security.capability"',
  );
  for (
    const name of ["capability", "security.", "user.a b", 'user."q"', "system.posix_acl_access"]
  ) {
    assertThrows(
      () => renderOwnershipScript([{ ...entry, xattrs: [{ name, base64: "" }] }], () => "/f"),
      Ext4Error,
      "not a name",
    );
  }
});

Deno.test("renderOwnershipScript() ORs the type bits and keeps setuid", () => {
  assertEquals(
    renderOwnershipScript([
      { path: "/usr/bin/sudo", kind: "file", uid: 0, gid: 0, mode: 0o4755 },
      { path: "/tmp", kind: "dir", uid: 0, gid: 0, mode: 0o1777 },
      { path: "/bin", kind: "symlink", uid: 0, gid: 0, mode: 0o777 },
    ]),
    [
      'sif "/usr/bin/sudo" mode 0104755',
      'sif "/usr/bin/sudo" uid 0',
      'sif "/usr/bin/sudo" gid 0',
      'sif "/tmp" mode 041777',
      'sif "/tmp" uid 0',
      'sif "/tmp" gid 0',
      'sif "/bin" uid 0',
      'sif "/bin" gid 0',
      "",
    ].join("\n"),
  );
});

Deno.test("debugfsProblems() ignores only the version banner", () => {
  assertEquals(debugfsProblems("debugfs 1.47.0 (5-Feb-2023)\n"), []);
  assertEquals(
    debugfsProblems("debugfs 1.47.0 (5-Feb-2023)\nrm: File not found by ext2_lookup\n"),
    ["rm: File not found by ext2_lookup"],
  );
});

/** `debugfs -R "ls -p dir"` parsed, for reading back what was written. */
async function listing(image: string, path: string): Promise<Map<string, ListedEntry>> {
  const out = await new Deno.Command("debugfs", {
    args: ["-R", `ls -p ${quoteDebugfsArg(path)}`, image],
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = `debugfs: ls -p x\n${new TextDecoder().decode(out.stdout)}`;
  const entries = parseListings(text, [path]).get(path) ?? [];
  return new Map(entries.map((e) => [e.name, e]));
}

async function withImage(fn: (image: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "bgt-ext4-" });
  try {
    const image = `${dir}/work.ext4`;
    await createExt4({ path: image, sizeBytes: 64 * 1024 * 1024, label: "work" });
    await fn(image, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

gatedTest(
  "createExt4() makes a clean ext4 whose root is root-owned 0755 (root)",
  E2FS,
  async () => {
    await withImage(async (image) => {
      assertEquals((await checkExt4(image)).clean, true);
      const root = await listing(image, "/");
      assertEquals(root.get(".")?.mode, 0o040755);
      assertEquals([root.get(".")?.uid, root.get(".")?.gid], [0, 0]);
      assertEquals((await Deno.stat(image)).size, 64 * 1024 * 1024);
    });
  },
);

gatedTest(
  "writeExt4() round trip: modes, owners, symlinks, odd names, e2fsck clean (root)",
  E2FS,
  async () => {
    await withImage(async (image) => {
      const bytes = new Uint8Array([0, 1, 2, 255, 10, 13]);
      await writeExt4(image, [
        { kind: "mkdir", path: "/.ssh", mode: 0o700 },
        {
          kind: "writeFile",
          path: "/.ssh/authorized_keys",
          text: "ssh-ed25519 AAAA k\n",
          mode: 0o600,
        },
        {
          kind: "writeFile",
          path: '/dir with "quotes"/a b',
          base64: btoa(String.fromCharCode(...bytes)),
        },
        {
          kind: "writeFile",
          path: "/bin/tool",
          text: "#!/bin/sh\n",
          mode: 0o4755,
          uid: 100000,
          gid: 70000,
        },
        { kind: "symlink", path: "/link", target: "/.ssh/authorized_keys", uid: 1000, gid: 1000 },
        { kind: "setAttrs", path: '/dir with "quotes"', mode: 0o750, uid: 1000 },
      ]);
      assertEquals((await checkExt4(image)).clean, true);
      const top = await listing(image, "/");
      assertEquals(top.get(".ssh")?.mode, 0o040700);
      assertEquals(top.get('dir with "quotes"'), {
        name: 'dir with "quotes"',
        mode: 0o040750,
        uid: 1000,
        gid: 0,
      });
      assertEquals(top.get("link"), { name: "link", mode: 0o120777, uid: 1000, gid: 1000 });
      assertEquals(top.get("bin")?.mode, 0o040755, "missing parent created 0755");
      const bin = await listing(image, "/bin");
      assertEquals(bin.get("tool"), { name: "tool", mode: 0o104755, uid: 100000, gid: 70000 });
      assertEquals(
        new TextDecoder().decode(await readExt4File(image, "/.ssh/authorized_keys")),
        "ssh-ed25519 AAAA k\n",
      );
      assertEquals(await readExt4File(image, '/dir with "quotes"/a b'), bytes);
    });
  },
);

gatedTest(
  "writeExt4() run twice replaces files and keeps directories, still clean (root)",
  E2FS,
  async () => {
    await withImage(async (image) => {
      const ops = (key: string) => [
        { kind: "mkdir" as const, path: "/.ssh", mode: 0o700 },
        { kind: "writeFile" as const, path: "/.ssh/authorized_keys", text: key, mode: 0o600 },
        { kind: "symlink" as const, path: "/.ssh/l", target: key.trim() },
      ];
      await writeExt4(image, ops("first\n"));
      await writeExt4(image, ops("second\n"));
      assertEquals((await checkExt4(image)).clean, true, "a repeated mkdir would orphan an inode");
      assertEquals(
        new TextDecoder().decode(await readExt4File(image, "/.ssh/authorized_keys")),
        "second\n",
      );
      assertEquals((await listing(image, "/.ssh")).size, 4);
    });
  },
);

gatedTest(
  "writeExt4() sets S_IFDIR with a directory mode so the fs stays clean (root)",
  E2FS,
  async () => {
    await withImage(async (image) => {
      await writeExt4(image, [{ kind: "mkdir", path: "/d" }, {
        kind: "setAttrs",
        path: "/d",
        mode: 0o700,
      }]);
      assertEquals((await listing(image, "/")).get("d")?.mode, 0o040700);
      assertEquals((await checkExt4(image)).clean, true);
      // Without the type bits (what a bare `sif … mode 0700` does) e2fsck finds damage:
      await new Deno.Command("debugfs", { args: ["-w", "-R", 'sif "/d" mode 0700', image] })
        .output();
      assertEquals((await checkExt4(image)).clean, false);
    });
  },
);

gatedTest(
  "writeExt4() refuses unencodable names and conflicts before writing anything (root)",
  E2FS,
  async () => {
    await withImage(async (image) => {
      await writeExt4(image, [{ kind: "writeFile", path: "/f", text: "x" }]);
      const digest = async () =>
        new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(image)));
      const before = await digest();
      await assertRejects(
        () =>
          writeExt4(image, [{ kind: "writeFile", path: "/ok", text: "" }, {
            kind: "mkdir",
            path: "/x\ny",
          }]),
        Ext4Error,
        "control character 0x0a",
      );
      await assertRejects(
        () =>
          writeExt4(image, [{ kind: "writeFile", path: "/ok", text: "" }, {
            kind: "writeFile",
            path: "/f/g",
            text: "",
          }]),
        Ext4Error,
        "a file is in the way",
      );
      await assertRejects(
        () => writeExt4(image, [{ kind: "writeFile", path: "/two", text: "a", base64: "" }]),
        Ext4Error,
        "exactly one",
      );
      assertEquals(await digest(), before, "the image is byte-identical");
    });
  },
);

gatedTest(
  "readExt4File() reports a missing file and refuses a directory (root)",
  E2FS,
  async () => {
    await withImage(async (image) => {
      const missing = await assertRejects(() => readExt4File(image, "/nope"), Ext4Error);
      assertEquals(missing.code, "not_found");
      const isDir = await assertRejects(() => readExt4File(image, "/lost+found"), Ext4Error);
      assertEquals(isDir.code, "invalid_argument");
    });
  },
);

gatedTest(
  "applyExt4Ownership() restores owners and setuid after mkfs -d (root)",
  E2FS,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bgt-ext4-" });
    try {
      await Deno.mkdir(`${dir}/tree/usr/bin`, { recursive: true });
      await Deno.writeTextFile(`${dir}/tree/usr/bin/su`, "x");
      await Deno.symlink("usr/bin", `${dir}/tree/bin`);
      const image = `${dir}/rootfs.ext4`;
      await createExt4({ path: image, sizeBytes: 32 * 1024 * 1024, fromDir: `${dir}/tree` });
      // A value with every awkward byte: NUL, newline, quote, 0xff.
      const value = new Uint8Array([1, 0, 0, 2, 0x0a, 0x22, 0xff, 0x00]);
      await applyExt4Ownership(image, [
        {
          path: "/usr/bin/su",
          kind: "file",
          uid: 0,
          gid: 42,
          mode: 0o4755,
          xattrs: [{ name: "user.raw", base64: btoa(String.fromCharCode(...value)) }],
        },
        { path: "/usr", kind: "dir", uid: 7, gid: 7, mode: 0o755 },
        { path: "/bin", kind: "symlink", uid: 9, gid: 9, mode: 0o777 },
      ]);
      assertEquals((await listing(image, "/usr/bin")).get("su"), {
        name: "su",
        mode: 0o104755,
        uid: 0,
        gid: 42,
      });
      await run("debugfs", ["-R", `ea_get -f ${dir}/value /usr/bin/su user.raw`, image]);
      assertEquals(await Deno.readFile(`${dir}/value`), value, "the xattr value byte for byte");
      assertEquals((await listing(image, "/")).get("usr")?.uid, 7);
      assertEquals((await listing(image, "/")).get("bin"), {
        name: "bin",
        mode: 0o120777,
        uid: 9,
        gid: 9,
      });
      assertEquals((await checkExt4(image)).clean, true);
      await assertRejects(
        () =>
          applyExt4Ownership(image, [{
            path: "/missing",
            kind: "file",
            uid: 0,
            gid: 0,
            mode: 0o644,
          }]),
        Ext4Error,
        "debugfs reported",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gatedTest("dumpExt4() copies a tree out with its contents (root)", E2FS, async () => {
  await withImage(async (image, dir) => {
    await writeExt4(image, [{
      kind: "writeFile",
      path: "/seed/a/b.txt",
      text: "hello",
      mode: 0o640,
    }]);
    await Deno.mkdir(`${dir}/out`);
    await dumpExt4(image, "/seed", `${dir}/out`);
    assertEquals(await Deno.readTextFile(`${dir}/out/seed/a/b.txt`), "hello");
    assertEquals(((await Deno.stat(`${dir}/out/seed/a/b.txt`)).mode ?? 0) & 0o777, 0o640);
  });
});

gatedTest("growExt4() grows file and filesystem; refuses to shrink (root)", E2FS, async () => {
  await withImage(async (image) => {
    await writeExt4(image, [{ kind: "writeFile", path: "/keep", text: "kept" }]);
    await growExt4(image, 128 * 1024 * 1024);
    assertEquals((await Deno.stat(image)).size, 128 * 1024 * 1024);
    const dump = await new Deno.Command("dumpe2fs", {
      args: ["-h", image],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    const blocks = /Block count:\s+(\d+)/.exec(new TextDecoder().decode(dump.stdout))?.[1];
    const bsize = /Block size:\s+(\d+)/.exec(new TextDecoder().decode(dump.stdout))?.[1];
    assertEquals(Number(blocks) * Number(bsize), 128 * 1024 * 1024);
    assertEquals(new TextDecoder().decode(await readExt4File(image, "/keep")), "kept");
    assertEquals((await checkExt4(image)).clean, true);
    await growExt4(image, 128 * 1024 * 1024);
    const err = await assertRejects(() => growExt4(image, 64 * 1024 * 1024), Ext4Error);
    assertEquals(err.code, "invalid_argument");
  });
});

gatedTest("createExt4() refuses a bad label or a tiny size (root)", E2FS, async () => {
  await assertRejects(() => createExt4({ path: "/tmp/x", sizeBytes: 1024 }), Ext4Error, "1 MiB");
  await assertRejects(
    () => createExt4({ path: "/tmp/x", sizeBytes: 1 << 20, label: "bad label" }),
    Ext4Error,
    "label",
  );
  assert(true);
});

gatedTest(
  "createExt4() is atomic: a failed mkfs leaves neither an image nor a temp file, and keeps a good one (root)",
  E2FS,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bgt-ext4-atomic-" });
    try {
      const image = `${dir}/work.ext4`;
      // mkfs -d of a missing directory fails after the image file was sized.
      await assertRejects(
        () => createExt4({ path: image, sizeBytes: 8 << 20, fromDir: `${dir}/missing` }),
        Ext4Error,
        "Cannot make an ext4 filesystem",
      );
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), [], "nothing left behind");
      await createExt4({ path: image, sizeBytes: 8 << 20, label: "good" });
      const before = (await Deno.stat(image)).ino;
      await assertRejects(() =>
        createExt4({ path: image, sizeBytes: 8 << 20, fromDir: `${dir}/missing` })
      );
      assertEquals((await Deno.stat(image)).ino, before, "the good image is untouched");
      assertEquals((await checkExt4(image)).clean, true);
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["work.ext4"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
