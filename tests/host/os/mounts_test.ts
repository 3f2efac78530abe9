import { mountOf, parseMountInfo } from "../../../host/os/mounts.ts";
import { assertEquals } from "../../fixtures/assert.ts";

const MOUNTINFO = [
  "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw",
  "30 22 0:26 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1024k",
  "31 22 0:27 / /var/lib/my\\040jail rw,relatime - tmpfs none rw",
  "32 30 0:28 / /tmp/inner rw - tmpfs tmpfs rw",
  "",
].join("\n");

Deno.test("parseMountInfo() reads mount point, device, options, type and source, unescaping \\040", () => {
  const mounts = parseMountInfo(MOUNTINFO);
  assertEquals(mounts.length, 4);
  assertEquals(mounts[1], {
    mountPoint: "/tmp",
    device: "0:26",
    options: ["rw", "nosuid", "nodev"],
    fsType: "tmpfs",
    source: "tmpfs",
  });
  assertEquals(mounts[2].mountPoint, "/var/lib/my jail");
});

Deno.test("mountOf() picks the longest mount point holding the path, never a name prefix", () => {
  const mounts = parseMountInfo(MOUNTINFO);
  assertEquals(mountOf(mounts, "/tmp/x")?.mountPoint, "/tmp");
  assertEquals(mountOf(mounts, "/tmp/inner/y")?.mountPoint, "/tmp/inner");
  assertEquals(mountOf(mounts, "/tmpfoo")?.mountPoint, "/");
  assertEquals(mountOf(mounts, "/var/lib/my jail/base")?.fsType, "tmpfs");
  assertEquals(mountOf(mounts, "/")?.source, "/dev/vda1");
});
