import { assert, assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { deviceMapper, gatedTest, programs, root } from "../../fixtures/requires.ts";
import {
  decodeDev,
  decodeDmIoctl,
  decodeNameList,
  decodeTargetStatus,
  deviceMapperSupport,
  DM_CMD,
  DM_FLAG,
  DM_IOCTL_SIZE,
  DM_TARGET_SPEC_SIZE,
  dmCreate,
  DmError,
  dmList,
  dmRemove,
  dmStatus,
  encodeDmIoctl,
  encodeTableLoad,
  encodeTargets,
  formatTable,
  parseSnapshotStatus,
  planSnapshot,
} from "../../../host/disk/dm.ts";
import { attachLoop, detachLoop, listLoops } from "../../../host/disk/loop.ts";

// Layout from gcc against <linux/dm-ioctl.h> 4.47.0 (reference/firecracker-and-host.md §5.3):
// struct dm_ioctl (312): version[3]@0 data_size@12 data_start@16 target_count@20
//   open_count@24 flags@28 event_nr@32 padding@36 dev@40 name[128]@48 uuid[129]@176 data[7]@305
// struct dm_target_spec (40): sector_start@0 length@8 status@16 next@20 target_type[16]@24

function u32(buf: Uint8Array, at: number, v: number) {
  new DataView(buf.buffer).setUint32(at, v, true);
}
function u64(buf: Uint8Array, at: number, v: bigint) {
  new DataView(buf.buffer).setBigUint64(at, v, true);
}

Deno.test("DM_CMD values are _IOWR(0xfd, nr, struct dm_ioctl)", () => {
  const iowr = (nr: number) => ((3 << 30) | (DM_IOCTL_SIZE << 16) | (0xfd << 8) | nr) >>> 0;
  assertEquals(DM_CMD.VERSION, iowr(0));
  assertEquals(DM_CMD.LIST_DEVICES, iowr(2));
  assertEquals(DM_CMD.DEV_CREATE, iowr(3));
  assertEquals(DM_CMD.DEV_REMOVE, iowr(4));
  assertEquals(DM_CMD.DEV_SUSPEND, iowr(6));
  assertEquals(DM_CMD.DEV_STATUS, iowr(7));
  assertEquals(DM_CMD.TABLE_LOAD, iowr(9));
  assertEquals(DM_CMD.TABLE_STATUS, iowr(12));
});

Deno.test("encodeDmIoctl() lays out struct dm_ioctl byte for byte", () => {
  const buf = encodeDmIoctl({
    dataSize: 320,
    targetCount: 2,
    flags: DM_FLAG.READONLY | DM_FLAG.DEFERRED_REMOVE,
    eventNr: 9,
    dev: 0xfe00n,
    name: "bg-root-x",
    uuid: "u",
  });
  const expected = new Uint8Array(320);
  u32(expected, 0, 4); // version {4,0,0}
  u32(expected, 12, 320); // data_size
  u32(expected, 16, 312); // data_start
  u32(expected, 20, 2); // target_count
  u32(expected, 28, 0x20001); // flags
  u32(expected, 32, 9); // event_nr
  u64(expected, 40, 0xfe00n); // dev
  expected.set(new TextEncoder().encode("bg-root-x"), 48);
  expected.set(new TextEncoder().encode("u"), 176);
  assertEquals(buf, expected);
  assertEquals(decodeDmIoctl(buf), {
    version: [4, 0, 0],
    dataSize: 320,
    dataStart: 312,
    targetCount: 2,
    openCount: 0,
    flags: 0x20001,
    eventNr: 9,
    dev: 0xfe00n,
    name: "bg-root-x",
    uuid: "u",
  });
});

Deno.test("encodeDmIoctl() takes a 127-byte name and refuses 128", () => {
  const ok = encodeDmIoctl({ dataSize: DM_IOCTL_SIZE, name: "n".repeat(127) });
  assertEquals(ok[48 + 126], 0x6e);
  assertEquals(ok[48 + 127], 0);
  assertThrows(() => encodeDmIoctl({ dataSize: DM_IOCTL_SIZE, name: "n".repeat(128) }), DmError);
  assertThrows(() => encodeDmIoctl({ dataSize: DM_IOCTL_SIZE, uuid: "u".repeat(129) }), DmError);
  assertThrows(() => encodeDmIoctl({ dataSize: 311 }), RangeError);
});

Deno.test("encodeTargets() pads params to 8 bytes and sets next to the spec's own size", () => {
  const specs = encodeTargets([
    { start: 0, length: 2048, type: "linear", params: "7:1 0" }, // 5 + NUL -> 8
    { start: 2048, length: 1024, type: "zero", params: "" }, // NUL -> 8
  ]);
  assertEquals(specs.length, 48 + 48);
  const expected = new Uint8Array(96);
  u64(expected, 0, 0n);
  u64(expected, 8, 2048n);
  u32(expected, 20, 48);
  expected.set(new TextEncoder().encode("linear"), 24);
  expected.set(new TextEncoder().encode("7:1 0"), 40);
  u64(expected, 48, 2048n);
  u64(expected, 56, 1024n);
  u32(expected, 68, 48);
  expected.set(new TextEncoder().encode("zero"), 72);
  assertEquals(specs, expected);
});

Deno.test("encodeTargets() at the alignment limit: 7 chars take 8 bytes, 8 chars take 16", () => {
  const seven = encodeTargets([{ start: 0, length: 1, type: "t", params: "1234567" }]);
  assertEquals(seven.length, DM_TARGET_SPEC_SIZE + 8);
  const eight = encodeTargets([{ start: 0, length: 1, type: "t", params: "12345678" }]);
  assertEquals(eight.length, DM_TARGET_SPEC_SIZE + 16);
  assertEquals(new DataView(eight.buffer).getUint32(20, true), 56);
});

Deno.test("encodeTargets() refuses a 16-byte type name and control characters in params", () => {
  encodeTargets([{ start: 0, length: 1, type: "t".repeat(15), params: "" }]);
  assertThrows(
    () => encodeTargets([{ start: 0, length: 1, type: "t".repeat(16), params: "" }]),
    DmError,
  );
  assertThrows(
    () => encodeTargets([{ start: 0, length: 1, type: "zero", params: "a\nb" }]),
    DmError,
  );
});

Deno.test("encodeTableLoad() puts the specs at data_start 312 with the right sizes", () => {
  const targets = [{ start: 0, length: 8, type: "snapshot", params: "7:1 7:2 P 8" }];
  const buf = encodeTableLoad("bg-root-a", targets, { readOnly: true });
  const header = decodeDmIoctl(buf);
  assertEquals(header.dataStart, 312);
  assertEquals(header.dataSize, 312 + 40 + 16);
  assertEquals(header.targetCount, 1);
  assertEquals(header.flags, DM_FLAG.READONLY);
  assertEquals(buf.subarray(312), encodeTargets(targets));
});

Deno.test("decodeTargetStatus() follows next as an offset from data_start", () => {
  const buf = encodeDmIoctl({ dataSize: 512, targetCount: 2 });
  // kernel-style output: spec 0 @312 (next = 48), spec 1 @312+48
  u64(buf, 312, 0n);
  u64(buf, 320, 100n);
  u32(buf, 332, 48);
  buf.set(new TextEncoder().encode("linear"), 336);
  buf.set(new TextEncoder().encode("7:0 0"), 352);
  u64(buf, 360, 100n);
  u64(buf, 368, 50n);
  u32(buf, 380, 96);
  buf.set(new TextEncoder().encode("snapshot"), 384);
  buf.set(new TextEncoder().encode("16/2048 8"), 400);
  assertEquals(decodeTargetStatus(buf), [
    { start: 0, length: 100, type: "linear", params: "7:0 0" },
    { start: 100, length: 50, type: "snapshot", params: "16/2048 8" },
  ]);
});

Deno.test("decodeNameList() walks dm_name_list and treats dev 0 as empty", () => {
  const empty = encodeDmIoctl({ dataSize: 400 });
  assertEquals(decodeNameList(empty), []);
  const buf = encodeDmIoctl({ dataSize: 400 });
  u64(buf, 312, 0xfd00n);
  u32(buf, 320, 32);
  buf.set(new TextEncoder().encode("bg-root-a"), 324);
  u64(buf, 344, 0xfd01n);
  u32(buf, 352, 0);
  buf.set(new TextEncoder().encode("other"), 356);
  assertEquals(decodeNameList(buf), [{ name: "bg-root-a", dev: 0xfd00n }, {
    name: "other",
    dev: 0xfd01n,
  }]);
});

Deno.test("decodeDev() splits huge_encode_dev values", () => {
  assertEquals(decodeDev(0xfe00n), { major: 254, minor: 0 });
  assertEquals(decodeDev(0x7n | (253n << 8n)), { major: 253, minor: 7 });
  assertEquals(decodeDev((300n & 0xffn) | (253n << 8n) | ((300n & ~0xffn) << 12n)), {
    major: 253,
    minor: 300,
  });
});

Deno.test("planSnapshot() maps the origin directly when the COW is not larger", () => {
  const plan = planSnapshot({
    origin: "/dev/loop1",
    cow: "/dev/loop2",
    originSectors: 4194304,
    cowSectors: 2097152,
  });
  assertEquals(plan.paddedOrigin, undefined);
  assertEquals(plan.sectors, 4194304);
  assertEquals(
    formatTable(plan.snapshot("/dev/loop1")),
    "0 4194304 snapshot /dev/loop1 /dev/loop2 P 8",
  );
});

Deno.test("planSnapshot() pads the origin with zeros up to a larger COW", () => {
  const plan = planSnapshot({
    origin: "/dev/loop1",
    cow: "/dev/loop2",
    originSectors: 1000,
    cowSectors: 5000,
  });
  assertEquals(formatTable(plan.paddedOrigin ?? []), "0 1000 linear /dev/loop1 0\n1000 4000 zero");
  assertEquals(formatTable(plan.snapshot("253:0")), "0 5000 snapshot 253:0 /dev/loop2 P 8");
  assertThrows(
    () => planSnapshot({ origin: "a", cow: "b", originSectors: 1, cowSectors: 1, chunkSectors: 6 }),
    DmError,
  );
});

Deno.test("parseSnapshotStatus() reads usage, Invalid and Overflow", () => {
  assertEquals(parseSnapshotStatus("16/2097152 8"), {
    state: "active",
    allocatedSectors: 16,
    totalSectors: 2097152,
    metadataSectors: 8,
  });
  assertEquals(parseSnapshotStatus("Invalid"), { state: "invalid" });
  assertEquals(parseSnapshotStatus("Overflow"), { state: "overflow" });
  assertEquals(parseSnapshotStatus("Merge failed"), { state: "unknown", text: "Merge failed" });
});

Deno.test("deviceMapperSupport() agrees with the presence of /dev/mapper/control", () => {
  const support = deviceMapperSupport();
  const present = deviceMapper().missing === undefined;
  assertEquals(support.available, present);
  if (!support.available) assert(support.reason.includes("/dev/mapper/control"), support.reason);
});

gatedTest(
  "dmCreate() snapshot, dmStatus() and dmRemove() on real loops (root, device-mapper)",
  [root(), deviceMapper(), programs("mkfs.ext4")],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bgt-dm-" });
    const name = `bg-root-t${crypto.randomUUID().slice(0, 8)}`;
    try {
      await Deno.writeFile(`${dir}/base`, new Uint8Array(0));
      await Deno.truncate(`${dir}/base`, 8 * 1024 * 1024);
      await Deno.writeFile(`${dir}/cow`, new Uint8Array(0));
      await Deno.truncate(`${dir}/cow`, 16 * 1024 * 1024);
      using base = attachLoop(`${dir}/base`, { readOnly: true, autoclear: true });
      using cow = attachLoop(`${dir}/cow`, { autoclear: true });
      const plan = planSnapshot({
        origin: base.device.path,
        cow: cow.device.path,
        originSectors: 16384,
        cowSectors: 16384,
      });
      const dev = dmCreate(name, plan.snapshot(base.device.path));
      assertEquals(dev.devicePath, `/dev/dm-${dev.minor}`);
      const status = dmStatus(name);
      assertEquals(status?.targets[0].type, "snapshot");
      assertEquals(parseSnapshotStatus(status?.targets[0].params ?? "").state, "active");
      assert(dmList().some((d) => d.name === name));
      assertEquals(await dmRemove(name), true);
      assertEquals(dmStatus(name), undefined);
      assertEquals(await dmRemove(name), false);
    } finally {
      await dmRemove(name).catch(() => {});
      for (const l of listLoops()) if (l.backingFile.startsWith(dir)) detachLoop(l.path);
      await Deno.remove(dir, { recursive: true });
    }
  },
);
