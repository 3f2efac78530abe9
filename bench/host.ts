/**
 * Host primitives: loop attach+detach through FFI against `losetup`; tap create+delete
 * through FFI against `ip tuntap` (inside a throwaway network namespace); and a per-VM
 * root disk of a 2 GiB image holding 400 MB by each strategy available here, against a
 * plain full copy. Prints medians and ratios; never asserts.
 *
 * Run: `deno run -A bench/host.ts` (needs root).
 *
 * @module
 */

import { createExt4, writeExt4 } from "../host/disk/ext4.ts";
import { attachLoop, detachLoop } from "../host/disk/loop.ts";
import { deviceMapperSupport } from "../host/disk/dm.ts";
import { createRootDisk, releaseRootDisk, type RootDiskStrategy } from "../host/disk/rootdisk.ts";
import { Fd, O_RDWR } from "../host/os/libc.ts";
import {
  createTap,
  deleteTap,
  encodeIfreq,
  IFF_NO_PI,
  IFF_TAP,
  IFF_VNET_HDR,
  TUNSETIFF,
  TUNSETPERSIST,
} from "../host/net/tap.ts";
import { heading, median, ms, row, timeRuns } from "./_stats.ts";

const SELF = new URL(import.meta.url).pathname;
const TAP_CHILD_FLAG = "--tap-child";

async function exec(program: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${program} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(1)}×`;
}

async function benchLoops(dir: string): Promise<void> {
  const file = `${dir}/loop.img`;
  await Deno.writeFile(file, new Uint8Array(0));
  await Deno.truncate(file, 16 * 1024 * 1024);
  const ffi = await timeRuns(100, () => {
    const loop = attachLoop(file, { readOnly: true });
    detachLoop(loop.device.path);
    loop.close();
    return Promise.resolve();
  });
  const spawn = await timeRuns(30, async () => {
    const dev = (await exec("losetup", ["-f", "--show", "-r", file])).trim();
    await exec("losetup", ["-d", dev]);
  });
  heading("host: loop attach + detach");
  row("FFI GET_FREE+CONFIGURE+CLR_FD, p50", ms(median(ffi)));
  row("losetup -f --show -r; losetup -d, p50", ms(median(spawn)));
  row("losetup / FFI", ratio(median(spawn), median(ffi)));
}

/** Runs inside the namespace: prints JSON timings for both tap methods. */
async function tapChild(): Promise<void> {
  await exec("ip", ["link", "add", "bg-brb", "type", "bridge"]);
  let i = 0;
  const ffiCreate: number[] = [];
  const ffiDelete: number[] = [];
  for (let n = 0; n < 30; n++) {
    const name = `bg-tap${i++}`;
    let t = performance.now();
    await createTap(name, { bridge: "bg-brb" });
    ffiCreate.push(performance.now() - t);
    t = performance.now();
    await deleteTap(name);
    ffiDelete.push(performance.now() - t);
  }
  const ipCreate: number[] = [];
  const ipDelete: number[] = [];
  for (let n = 0; n < 30; n++) {
    const name = `bg-tap${i++}`;
    let t = performance.now();
    await exec("ip", ["tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr"]);
    await exec("ip", ["link", "set", "dev", name, "master", "bg-brb", "up"]);
    ipCreate.push(performance.now() - t);
    t = performance.now();
    await exec("ip", ["tuntap", "del", "dev", name, "mode", "tap"]);
    ipDelete.push(performance.now() - t);
  }
  const ffiOnly: number[] = [];
  const ipOnly: number[] = [];
  for (let n = 0; n < 30; n++) {
    const a = `bg-tap${i++}`;
    let t = performance.now();
    {
      using tun = Fd.open("/dev/net/tun", O_RDWR);
      tun.ioctlPtr(TUNSETIFF, encodeIfreq(a, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), "create");
      tun.ioctlInt(TUNSETPERSIST, 1, "persist");
    }
    ffiOnly.push(performance.now() - t);
    await deleteTap(a);
    const b = `bg-tap${i++}`;
    t = performance.now();
    await exec("ip", ["tuntap", "add", "dev", b, "mode", "tap", "vnet_hdr"]);
    ipOnly.push(performance.now() - t);
    await exec("ip", ["tuntap", "del", "dev", b, "mode", "tap"]);
  }
  // deno-lint-ignore no-console
  console.log(JSON.stringify({ ffiCreate, ffiDelete, ipCreate, ipDelete, ffiOnly, ipOnly }));
}

async function benchTaps(): Promise<void> {
  const ns = `bgb-${crypto.randomUUID().slice(0, 8)}`;
  await exec("ip", ["netns", "add", ns]);
  try {
    const out = await exec("ip", [
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "run",
      "-A",
      "-q",
      SELF,
      TAP_CHILD_FLAG,
    ]);
    const r = JSON.parse(out.trim().split("\n").pop() ?? "{}") as Record<string, number[]>;
    heading("host: tap create (+ enslave + up) and delete, in a netns");
    row("create: FFI TUNSETIFF+PERSIST only, p50", ms(median(r.ffiOnly)));
    row("create: ip tuntap add only, p50", ms(median(r.ipOnly)));
    row("ip tuntap / FFI (create only)", ratio(median(r.ipOnly), median(r.ffiOnly)));
    row("createTap() (FFI + ip master/up), p50", ms(median(r.ffiCreate)));
    row("ip tuntap add + ip master/up, p50", ms(median(r.ipCreate)));
    row("ip / createTap()", ratio(median(r.ipCreate), median(r.ffiCreate)));
    row("FFI delete, p50", ms(median(r.ffiDelete)));
    row("ip tuntap del, p50", ms(median(r.ipDelete)));
  } finally {
    await exec("ip", ["netns", "del", ns]).catch(() => {});
  }
}

/** A 2 GiB sparse ext4 holding one 400 MB file of random bytes. */
async function makeImage(dir: string): Promise<string> {
  const image = `${dir}/rootfs.ext4`;
  await createExt4({ path: image, sizeBytes: 2 * 1024 ** 3 });
  const blob = `${dir}/blob`;
  {
    using f = await Deno.open(blob, { write: true, create: true });
    const chunk = new Uint8Array(4 * 1024 * 1024);
    for (let written = 0; written < 400e6; written += chunk.length) {
      for (let i = 0; i < chunk.length; i += 65536) {
        crypto.getRandomValues(chunk.subarray(i, i + 65536));
      }
      await f.write(chunk);
    }
  }
  await writeExt4(image, [{ kind: "writeFile", path: "/blob", hostFile: blob }]);
  await Deno.remove(blob);
  return image;
}

async function timeStrategy(
  image: string,
  vmRoot: string,
  strategy: RootDiskStrategy,
): Promise<number[]> {
  let n = 0;
  return await timeRuns(3, async () => {
    const handle = await createRootDisk({
      id: `bench${n}`,
      baseImage: image,
      vmDir: `${vmRoot}/vm${n++}`,
      cowBytes: 4 * 1024 ** 3,
      strategy,
    });
    await releaseRootDisk(handle, { deleteFiles: true });
  }, 1);
}

async function benchRootDisks(dir: string): Promise<void> {
  const image = await makeImage(dir);
  const results: [string, number][] = [];
  let n = 0;
  const plain = await timeRuns(3, async () => {
    const dst = `${dir}/plain${n++}`;
    await Deno.copyFile(image, dst);
    await Deno.remove(dst);
  }, 1);
  results.push(["plain copy (Deno.copyFile), p50", median(plain)]);
  results.push([
    "sparse-copy, p50",
    median(await timeStrategy(image, `${dir}/vms`, "sparse-copy")),
  ]);
  if (deviceMapperSupport().available) {
    results.push([
      "dm-snapshot, p50",
      median(await timeStrategy(image, `${dir}/vms`, "dm-snapshot")),
    ]);
  }
  const reflink = await reflinkRun(dir);
  heading("host: root disk of a 2 GiB image holding 400 MB");
  for (const [name, value] of results) {
    row(name, `${ms(value)}  (plain copy / this: ${ratio(results[0][1], value)})`);
  }
  if (!deviceMapperSupport().available) row("dm-snapshot", "skipped: no device-mapper");
  if (reflink) {
    // Both timed on the one XFS filesystem: a ratio across filesystems would measure them.
    row("plain copy on the XFS loop, p50", ms(reflink.plain));
    row(
      "reflink (XFS on a loop), p50",
      `${ms(reflink.reflink)}  (XFS plain copy / this: ${ratio(reflink.plain, reflink.reflink)})`,
    );
  }
}

/**
 * Times reflink, and a plain copy as its baseline, on an XFS image mounted for the run;
 * `undefined` without mkfs.xfs.
 */
async function reflinkRun(dir: string): Promise<{ reflink: number; plain: number } | undefined> {
  try {
    await exec("mkfs.xfs", ["-V"]);
  } catch {
    row("reflink", "skipped: mkfs.xfs not installed");
    return undefined;
  }
  const img = `${dir}/xfs.img`;
  const mnt = `${dir}/xfs`;
  await Deno.mkdir(mnt);
  await Deno.writeFile(img, new Uint8Array(0));
  await Deno.truncate(img, 4 * 1024 ** 3);
  await exec("mkfs.xfs", ["-q", "-m", "reflink=1", img]);
  await exec("mount", ["-o", "loop", img, mnt]);
  try {
    await Deno.copyFile(`${dir}/rootfs.ext4`, `${mnt}/rootfs.ext4`);
    let n = 0;
    const plain = await timeRuns(3, async () => {
      const dst = `${mnt}/plain${n++}`;
      await Deno.copyFile(`${mnt}/rootfs.ext4`, dst);
      await Deno.remove(dst);
    }, 1);
    const reflink = await timeStrategy(`${mnt}/rootfs.ext4`, `${mnt}/vms`, "reflink");
    return { reflink: median(reflink), plain: median(plain) };
  } finally {
    await exec("umount", [mnt]);
  }
}

/** Runs the benchmark and prints its figures. */
export async function main(): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "bgb-host-" });
  try {
    await benchLoops(dir);
    await benchTaps();
    await benchRootDisks(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  if (Deno.args.includes(TAP_CHILD_FLAG)) await tapChild();
  else await main();
}
