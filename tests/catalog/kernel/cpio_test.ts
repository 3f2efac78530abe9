import { CpioError, encodeNewc } from "../../../catalog/kernel/cpio.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";

const text = (bytes: Uint8Array) => new TextDecoder("latin1").decode(bytes);
const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("encodeNewc() writes newc headers, padded names and data, and the trailer byte for byte", () => {
  const archive = encodeNewc([
    { kind: "dir", path: "bin", mode: 0o755 },
    { kind: "file", path: "bin/a", mode: 0o644, data: enc("hi") },
  ]);
  //            magic   ino      mode     uid      gid      nlink    mtime    size
  //            devmaj   devmin   rdevmaj  rdevmin  namesize check
  const expected = "070701" + "00000001" + "000041ed" + "00000000" + "00000000" + "00000002" +
    "00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "00000004" +
    "00000000" + "bin\0" + "\0\0" +
    "070701" + "00000002" + "000081a4" + "00000000" + "00000000" + "00000001" + "00000000" +
    "00000002" + "00000000" + "00000000" + "00000000" + "00000000" + "00000006" + "00000000" +
    "bin/a\0" + "hi\0\0" +
    "070701" + "00000000" + "00000000" + "00000000" + "00000000" + "00000001" + "00000000" +
    "00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "0000000b" + "00000000" +
    "TRAILER!!!\0" + "\0\0\0";
  assertEquals(text(archive), expected);
  assertEquals(archive.length % 4, 0);
});

Deno.test("encodeNewc() stores symlink targets as data and device numbers in rdev", () => {
  const archive = text(encodeNewc([
    { kind: "dir", path: "dev", mode: 0o755 },
    { kind: "chardev", path: "dev/console", mode: 0o600, major: 5, minor: 1 },
    { kind: "symlink", path: "sh", target: "busybox" },
  ]));
  const console = archive.indexOf("070701" + "00000002");
  assertEquals(archive.slice(console + 14, console + 22), "00002180"); // S_IFCHR | 0600
  assertEquals(archive.slice(console + 78, console + 94), "0000000500000001");
  const link = archive.indexOf("070701" + "00000003");
  assertEquals(archive.slice(link + 14, link + 22), "0000a1ff"); // S_IFLNK | 0777
  assertEquals(archive.slice(link + 54, link + 62), "00000007"); // filesize = "busybox"
  // "sh\0" pads 110 + 3 up to 116, then the target.
  assertEquals(archive.slice(link + 110, link + 124), "sh\0\0\0\0busybox\0");
});

Deno.test("encodeNewc() rejects unsafe or inconsistent entries", async (t) => {
  const file = (path: string) => ({ kind: "file" as const, path, mode: 0o644, data: enc("") });
  for (
    const [name, entries, why] of [
      ["absolute path", [file("/init")], "relative"],
      ["dot-dot", [file("../init")], "'..'"],
      ["missing parent", [file("bin/busybox")], 'parent "bin"'],
      ["duplicate", [file("init"), file("init")], "twice"],
      ["NUL in name", [file("in\0it")], "NUL"],
      ["mode bits", [{ kind: "file" as const, path: "x", mode: 0o100644, data: enc("") }], "7777"],
    ] as const
  ) {
    await t.step(name, () => {
      assertThrows(() => encodeNewc(entries), CpioError, why);
    });
  }
});

gatedTest("encodeNewc() output extracts with GNU cpio", [programs("cpio")], async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(
      `${dir}/a.cpio`,
      encodeNewc([
        { kind: "dir", path: "bin", mode: 0o750 },
        { kind: "file", path: "bin/tool", mode: 0o755, data: enc("#!/bin/sh\necho hi\n") },
        { kind: "symlink", path: "tool", target: "bin/tool" },
      ]),
    );
    const out = await new Deno.Command("sh", {
      args: ["-c", `mkdir x && cd x && cpio -id --quiet < ../a.cpio`],
      cwd: dir,
      stderr: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(out.stderr), "");
    assertEquals(await Deno.readTextFile(`${dir}/x/bin/tool`), "#!/bin/sh\necho hi\n");
    assertEquals(((await Deno.stat(`${dir}/x/bin/tool`)).mode ?? 0) & 0o777, 0o755);
    assertEquals(((await Deno.stat(`${dir}/x/bin`)).mode ?? 0) & 0o777, 0o750);
    assertEquals(await Deno.readLink(`${dir}/x/tool`), "bin/tool");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
