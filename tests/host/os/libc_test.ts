import { assert, assertEquals, assertThrows } from "../../fixtures/assert.ts";
import {
  cString,
  decodeCString,
  decodeUcred,
  Errno,
  errnoName,
  Fd,
  LibcError,
  O_CREAT,
  O_EXCL,
  O_RDONLY,
  O_RDWR,
  pathExists,
  SEEK_DATA,
  SEEK_END,
  SEEK_HOLE,
  UCRED_SIZE,
} from "../../../host/os/libc.ts";

Deno.test("cString() appends one NUL and refuses an embedded NUL", () => {
  assertEquals(cString("ab"), new Uint8Array([0x61, 0x62, 0]));
  assertEquals(cString(""), new Uint8Array([0]));
  assertThrows(() => cString("a\0b"), RangeError);
});

Deno.test("decodeCString() stops at the first NUL and reads a full field without one", () => {
  const buf = new Uint8Array([0x78, 0x61, 0x62, 0, 0x63, 0x64]);
  assertEquals(decodeCString(buf, 1, 5), "ab");
  assertEquals(decodeCString(buf, 4, 2), "cd");
});

Deno.test("decodeUcred() reads pid, uid and gid little-endian from 12 bytes", () => {
  const buf = new Uint8Array(UCRED_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setInt32(0, 4242, true);
  dv.setUint32(4, 1000, true);
  dv.setUint32(8, 4294967294, true);
  assertEquals(decodeUcred(buf), { pid: 4242, uid: 1000, gid: 4294967294 });
  assertThrows(() => decodeUcred(new Uint8Array(11)), RangeError);
});

Deno.test("errnoName() names known values and numbers unknown ones", () => {
  assertEquals(errnoName(16), "EBUSY");
  assertEquals(errnoName(95), "EOPNOTSUPP");
  assertEquals(errnoName(9999), "errno 9999");
});

Deno.test("Fd.open() failure is a LibcError naming the operation, path, strerror and errno", () => {
  const err = assertThrows(
    () => Fd.open("/nonexistent-banger/x", O_RDONLY, "open backing file"),
    LibcError,
  );
  assertEquals(err.errno, Errno.ENOENT);
  assertEquals(err.code, "not_found");
  assertEquals(
    err.message,
    'Cannot open backing file "/nonexistent-banger/x": No such file or directory (ENOENT)',
  );
});

Deno.test("Fd reads, writes, seeks holes and truncates a real file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bgt-libc-" });
  try {
    const path = `${dir}/f`;
    {
      using fd = Fd.open(path, O_RDWR | O_CREAT | O_EXCL, "create");
      fd.truncate(8 * 1024 * 1024);
      fd.pwriteAll(new TextEncoder().encode("hello"), 4 * 1024 * 1024);
      fd.fsync();
      assertEquals(fd.seek(0, SEEK_END), 8 * 1024 * 1024);
      assertEquals(fd.seek(0, SEEK_DATA), 4 * 1024 * 1024);
      const hole = fd.seek(4 * 1024 * 1024, SEEK_HOLE) ?? 0;
      assert(hole > 4 * 1024 * 1024 && hole <= 8 * 1024 * 1024, `hole at ${hole}`);
      assertEquals(fd.seek(hole, SEEK_DATA), undefined, "no data after the last extent");
      const buf = new Uint8Array(5);
      assertEquals(fd.pread(buf, 4 * 1024 * 1024), 5);
      assertEquals(new TextDecoder().decode(buf), "hello");
    }
    const err = assertThrows(() => Fd.open(path, O_RDWR | O_CREAT | O_EXCL, "create"), LibcError);
    assertEquals(err.errno, Errno.EEXIST);
    using again = Fd.open(path, O_RDONLY);
    assertEquals(again.readAll(10).length, 10);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Fd.close() twice is harmless and use after close throws", () => {
  const fd = Fd.open("/dev/null", O_RDONLY);
  fd.close();
  fd.close();
  assertThrows(() => fd.fd, RangeError);
});

Deno.test("pathExists() sees /dev, which Deno's fs APIs refuse", () => {
  assert(pathExists("/dev/null"));
  assert(!pathExists("/dev/banger-does-not-exist"));
});
