import {
  decodeStat,
  encodeOpenHow,
  Errno,
  Fd,
  LibcError,
  O_RDONLY,
  O_WRONLY,
  RESOLVE_NO_SYMLINKS,
  STAT_SIZE,
} from "../../../host/os/libc.ts";
import { PinnedDir } from "../../../host/os/pinned_dir.ts";
import { assert, assertEquals, assertThrows } from "../../fixtures/assert.ts";

Deno.test("encodeOpenHow() lays out flags, mode and resolve as three little-endian u64", () => {
  const dv = new DataView(encodeOpenHow(0x241, 0o600, RESOLVE_NO_SYMLINKS).buffer);
  assertEquals([dv.getBigUint64(0, true), dv.getBigUint64(8, true), dv.getBigUint64(16, true)], [
    0x241n,
    0o600n,
    4n,
  ]);
});

Deno.test("decodeStat() reads nlink, mode, uid, gid and size at their x86_64 offsets", () => {
  const buf = new Uint8Array(STAT_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setBigUint64(16, 3n, true);
  dv.setUint32(24, 0o100644, true);
  dv.setUint32(28, 1000, true);
  dv.setUint32(32, 1001, true);
  dv.setBigInt64(48, 4096n, true);
  const st = decodeStat(buf);
  assertEquals([st.nlink, st.mode, st.uid, st.gid, st.size], [3, 0o100644, 1000, 1001, 4096]);
});

async function tree(): Promise<{ base: string } & AsyncDisposable> {
  const base = await Deno.makeTempDir({ prefix: "bgp-" });
  await Deno.mkdir(`${base}/real/sub`, { recursive: true });
  await Deno.mkdir(`${base}/outside`);
  await Deno.writeTextFile(`${base}/real/file`, "data");
  await Deno.symlink(`${base}/outside`, `${base}/real/link`);
  await Deno.symlink(`${base}/real`, `${base}/alias`);
  return { base, [Symbol.asyncDispose]: () => Deno.remove(base, { recursive: true }) };
}

Deno.test("Fd.openAt() with RESOLVE_NO_SYMLINKS refuses a symlink on any component (ELOOP)", async () => {
  await using t = await tree();
  using ok = Fd.openAt(undefined, `${t.base}/real/file`, O_RDONLY, RESOLVE_NO_SYMLINKS);
  assertEquals(ok.stat().size, 4);
  for (const p of [`${t.base}/alias/file`, `${t.base}/real/link`]) {
    const err = assertThrows(
      () => Fd.openAt(undefined, p, O_RDONLY, RESOLVE_NO_SYMLINKS),
      LibcError,
    );
    assertEquals(err.errno, Errno.ELOOP);
  }
});

Deno.test("PinnedDir keeps working on the directory it opened after its path is swapped for a symlink", async () => {
  await using t = await tree();
  using dir = PinnedDir.open(`${t.base}/real/sub`);
  await Deno.rename(`${t.base}/real/sub`, `${t.base}/real/moved`);
  await Deno.symlink(`${t.base}/outside`, `${t.base}/real/sub`);
  using f = dir.createFile("new", O_WRONLY);
  f.writeAll(new TextEncoder().encode("x"));
  assertEquals(await Deno.readTextFile(`${t.base}/real/moved/new`), "x");
  assertEquals([...Deno.readDirSync(`${t.base}/outside`)].length, 0, "nothing lands outside");
  assertThrows(() => PinnedDir.open(`${t.base}/real/sub`), LibcError, "ELOOP");
});

Deno.test("PinnedDir.openFile() refuses a symlinked entry, and entry names must be one component", async () => {
  await using t = await tree();
  using dir = PinnedDir.open(`${t.base}/real`);
  const err = assertThrows(() => dir.openFile("link", O_RDONLY), LibcError);
  assert(err.errno === Errno.ELOOP || err.errno === Errno.EXDEV);
  assertThrows(() => dir.openFile("../outside", O_RDONLY), RangeError, "one path component");
  assertEquals(dir.mkdir("made"), true);
  assertEquals(dir.mkdir("made"), false);
  assertEquals(dir.remove("made", { dir: true }), true);
  assertEquals(dir.remove("made", { dir: true }), false);
});
