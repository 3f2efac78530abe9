import { assert, assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { Errno, Fd, LibcError, O_RDONLY, O_RDWR } from "../../../host/os/libc.ts";
import {
  attachLoop,
  blockDeviceSize,
  decodeLoopInfo,
  detachLoop,
  encodeLoopConfig,
  findLoopsForFile,
  listLoops,
  LO_FLAGS_AUTOCLEAR,
  LO_FLAGS_READ_ONLY,
  LOOP_CONFIG_SIZE,
  LOOP_INFO64_SIZE,
  LoopError,
  loopStatus,
  parseLoopPath,
} from "../../../host/disk/loop.ts";

const PREFIX = "bgt-loop-";
const LOOP_URL = new URL("../../../host/disk/loop.ts", import.meta.url).href;

/** Detaches every loop this file's tests attached (backing file under a bgt-loop- dir). */
function detachOurs(): void {
  for (const l of listLoops()) if (l.backingFile.includes(`/${PREFIX}`)) detachLoop(l.path);
}

async function withExt4(fn: (image: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: PREFIX });
  try {
    const image = `${dir}/rootfs.ext4`;
    await Deno.writeFile(image, new Uint8Array(0));
    await Deno.truncate(image, 16 * 1024 * 1024);
    const out = await new Deno.Command("mkfs.ext4", { args: ["-q", "-F", "-L", "bgtlabel", image] })
      .output();
    assert(out.success, "mkfs.ext4 failed");
    await fn(image, dir);
  } finally {
    detachOurs();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("encodeLoopConfig() lays out struct loop_config byte for byte", () => {
  const cfg = encodeLoopConfig({
    fd: 7,
    blockSize: 4096,
    flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
    fileName: "/x/y",
  });
  assertEquals(cfg.length, LOOP_CONFIG_SIZE);
  const expected = new Uint8Array(304);
  expected.set([7, 0, 0, 0], 0); // fd @0
  expected.set([0, 0x10, 0, 0], 4); // block_size @4
  expected.set([5, 0, 0, 0], 8 + 52); // info.lo_flags @60
  expected.set(new TextEncoder().encode("/x/y"), 8 + 56); // info.lo_file_name @64
  assertEquals(cfg, expected);
});

Deno.test("encodeLoopConfig() keeps a 63-byte name whole and cuts longer ones to 63 bytes", async (t) => {
  const nameAt = 8 + 56;
  await t.step("63 bytes fit with the NUL", () => {
    const name = "/" + "a".repeat(62);
    const cfg = encodeLoopConfig({ fd: 0, blockSize: 0, flags: 0, fileName: name });
    assertEquals(new TextDecoder().decode(cfg.subarray(nameAt, nameAt + 63)), name);
    assertEquals(cfg[nameAt + 63], 0);
  });
  await t.step("64 bytes are cut to 63", () => {
    const name = "/" + "b".repeat(63);
    const cfg = encodeLoopConfig({ fd: 0, blockSize: 0, flags: 0, fileName: name });
    assertEquals(new TextDecoder().decode(cfg.subarray(nameAt, nameAt + 63)), name.slice(0, 63));
    assertEquals(cfg[nameAt + 63], 0);
    assertEquals(cfg[nameAt + 64], 0, "lo_crypt_name untouched");
  });
  await t.step("a multi-byte character is not split", () => {
    const name = "/" + "c".repeat(61) + "é"; // 64 bytes: é straddles the limit
    const cfg = encodeLoopConfig({ fd: 0, blockSize: 0, flags: 0, fileName: name });
    assertEquals(cfg[nameAt + 62], 0);
    assertEquals(decodeLoopInfo(cfg.subarray(8)).fileName, name.slice(0, 62));
  });
});

Deno.test("decodeLoopInfo() reads struct loop_info64 fields at their uapi offsets", () => {
  const buf = new Uint8Array(LOOP_INFO64_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setBigUint64(0, 65024n, true);
  dv.setBigUint64(8, 123456789n, true);
  dv.setBigUint64(24, 512n, true);
  dv.setBigUint64(32, 1024n, true);
  dv.setUint32(40, 9, true);
  dv.setUint32(52, 5, true);
  buf.set(new TextEncoder().encode("/img"), 56);
  assertEquals(decodeLoopInfo(buf), {
    device: 65024n,
    inode: 123456789n,
    offset: 512n,
    sizeLimit: 1024n,
    number: 9,
    flags: 5,
    fileName: "/img",
  });
  assertThrows(() => decodeLoopInfo(new Uint8Array(231)), RangeError);
});

Deno.test("parseLoopPath() accepts only /dev/loopN", () => {
  assertEquals(parseLoopPath("/dev/loop0"), 0);
  assertEquals(parseLoopPath("/dev/loop12"), 12);
  for (const bad of ["/dev/loop", "/dev/loop01", "/dev/loop1p1", "/dev/sda", "/dev/loop-control"]) {
    assertEquals(parseLoopPath(bad), undefined, bad);
  }
});

gatedTest("attachLoop() read-only exposes the ext4 superblock and refuses writes (root)", [
  root(),
  programs("mkfs.ext4"),
], async () => {
  await withExt4(async (image) => {
    using loop = attachLoop(image, { readOnly: true });
    const { path } = loop.device;
    assert(parseLoopPath(path) !== undefined, path);
    const status = loopStatus(path);
    assertEquals(status?.flags, LO_FLAGS_READ_ONLY);
    assertEquals(status?.fileName, image);
    assertEquals(blockDeviceSize(path), 16 * 1024 * 1024);
    assertEquals(await findLoopsForFile(image), [path]);
    using dev = Fd.open(path, O_RDWR);
    const sb = new Uint8Array(1024);
    assertEquals(dev.pread(sb, 1024), 1024);
    const dv = new DataView(sb.buffer);
    assertEquals(dv.getUint16(56, true), 0xef53, "s_magic");
    assertEquals(new TextDecoder().decode(sb.subarray(120, 128)), "bgtlabel", "s_volume_name");
    const err = assertThrows(() => dev.pwriteAll(new Uint8Array(512), 0), LibcError);
    assertEquals(err.errno, Errno.EPERM);
    dev.close();
    assertEquals(detachLoop(path), true);
    loop.close();
    assertEquals(loopStatus(path), undefined);
    assertEquals(await findLoopsForFile(image), []);
    assertEquals(detachLoop(path), false, "detaching again reports nothing attached");
  });
});

gatedTest("attachLoop() read-write writes through to the backing file (root)", [
  root(),
  programs("mkfs.ext4"),
], async () => {
  await withExt4(async (image) => {
    const marker = new TextEncoder().encode("banger-was-here");
    {
      using loop = attachLoop(image);
      assertEquals(loop.device.readOnly, false);
      using dev = Fd.open(loop.device.path, O_RDWR);
      dev.pwriteAll(marker, 8 * 1024 * 1024);
      dev.fsync();
      dev.close();
      detachLoop(loop.device.path);
    }
    using file = await Deno.open(image);
    await file.seek(8 * 1024 * 1024, Deno.SeekMode.Start);
    const back = new Uint8Array(marker.length);
    await file.read(back);
    assertEquals(back, marker);
  });
});

gatedTest("attachLoop() with autoclear detaches when the last opener closes (root)", [
  root(),
  programs("mkfs.ext4"),
], async () => {
  await withExt4(async (image) => {
    const loop = attachLoop(image, { readOnly: true, autoclear: true });
    const consumer = Fd.open(loop.device.path, O_RDONLY); // stands in for dm / the VMM
    loop.close();
    assertEquals(loopStatus(loop.device.path)?.flags, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR);
    consumer.close();
    assertEquals(await findLoopsForFile(image), []);
  });
});

gatedTest("attachLoop() names the file and errno when the backing file is missing (root)", [
  root(),
], () => {
  const err = assertThrows(() => attachLoop("/nonexistent-banger.ext4"), LoopError);
  assertEquals(err.code, "not_found");
  assertEquals(
    err.message,
    'Cannot attach a loop device to "/nonexistent-banger.ext4": cannot open backing file "/nonexistent-banger.ext4": No such file or directory (ENOENT)',
  );
});

gatedTest(
  "attachLoop() in concurrent processes yields distinct devices despite the GET_FREE race (root)",
  [root(), programs("mkfs.ext4")],
  async () => {
    await withExt4(async (image, dir) => {
      const child = `${dir}/attach_child.ts`;
      await Deno.writeTextFile(
        child,
        `import { attachLoop } from ${JSON.stringify(LOOP_URL)};
console.log("ready");
const buf = new Uint8Array(16);
await Deno.stdin.read(buf); // barrier: the parent releases every child at once
const paths = [];
for (let i = 0; i < 4; i++) paths.push(attachLoop(${
          JSON.stringify(image)
        }, { readOnly: true }).device.path);
console.log(JSON.stringify(paths));
`,
      );
      const procs = Array.from({ length: 6 }, () =>
        new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--quiet", child],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn());
      const readers = procs.map((p) => p.stdout.pipeThrough(new TextDecoderStream()).getReader());
      for (const r of readers) {
        const first = await r.read();
        assertEquals(first.value?.trim(), "ready");
      }
      await Promise.all(procs.map(async (p) => {
        const w = p.stdin.getWriter();
        await w.write(new TextEncoder().encode("go\n"));
        await w.close();
      }));
      const all: string[] = [];
      for (const [i, r] of readers.entries()) {
        let text = "";
        for (let c = await r.read(); !c.done; c = await r.read()) text += c.value;
        const status = await procs[i].status;
        const stderr = await new Response(procs[i].stderr).text();
        assert(status.success, `child ${i} failed: ${stderr}`);
        all.push(...(JSON.parse(text.trim()) as string[]));
      }
      assertEquals(all.length, 24);
      assertEquals(new Set(all).size, 24, `duplicate devices: ${all.join(" ")}`);
      assertEquals((await findLoopsForFile(image)).sort(), [...all].sort());
      for (const p of all) assertEquals(detachLoop(p), true);
      assertEquals(await findLoopsForFile(image), []);
    });
  },
);

gatedTest("loop tests leave no loop device behind (root)", [root()], () => {
  assertEquals(listLoops().filter((l) => l.backingFile.includes(`/${PREFIX}`)), []);
});
