import {
  GOLDEN_IMAGE_NAME,
  goldenImageRecipe,
  imageManifestSchema,
} from "../../catalog/golden_image.ts";
import { agent } from "../../catalog/guest/agent.ts";
import { networkBootstrap } from "../../catalog/guest/network_bootstrap.ts";
import { sshdConfig } from "../../catalog/guest/sshd_config.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertStringIncludes,
} from "../fixtures/assert.ts";
import { guestArtifacts, guestArtifactsRequirements } from "../fixtures/guest_artifacts.ts";
import { gatedTest, programs, root } from "../fixtures/requires.ts";
import { asOwner, ownerDenoDir } from "../fixtures/system_root.ts";

async function debugfs(image: string, command: string): Promise<string> {
  const out = await new Deno.Command("debugfs", {
    args: ["-R", command, image],
    stdout: "piped",
    stderr: "null",
  })
    .output();
  return new TextDecoder().decode(out.stdout);
}

/** Mode and uid of a path inside the image, from `debugfs stat`. */
async function inode(
  image: string,
  path: string,
): Promise<{ mode: number; uid: number } | undefined> {
  const stat = await debugfs(image, `stat "${path}"`);
  const mode = /Mode:\s+(\d+)/.exec(stat)?.[1];
  const uid = /User:\s+(\d+)/.exec(stat)?.[1];
  // debugfs prints the permission bits only ("Mode:  04755").
  return mode && uid ? { mode: parseInt(mode, 8), uid: Number(uid) } : undefined;
}

Deno.test("goldenImageRecipe() is stable and depends on the suite", () => {
  assertMatch(goldenImageRecipe(), /^[0-9a-f]{64}$/);
  assertEquals(goldenImageRecipe(), goldenImageRecipe("bookworm"));
  assertNotEquals(goldenImageRecipe("trixie"), goldenImageRecipe("bookworm"));
});

gatedTest(
  "buildGoldenImage() produces a clean root-owned ext4 with the packages, the guest pieces and no host keys (root, debootstrap)",
  [...guestArtifactsRequirements(), programs("debugfs", "e2fsck")],
  async () => {
    const { imageDir, rootfs } = await guestArtifacts();
    const manifest = imageManifestSchema.parse(
      JSON.parse(await Deno.readTextFile(`${imageDir}/manifest.json`)),
    );
    assertEquals(manifest.name, GOLDEN_IMAGE_NAME);
    assertEquals(manifest.distro, "debian-bookworm");
    assertEquals(manifest.size, (await Deno.stat(rootfs)).size);
    assert(manifest.size >= 1024 ** 3, "at least 1 GiB");

    const fsck = await new Deno.Command("e2fsck", {
      args: ["-fn", rootfs],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(fsck.code, 0, new TextDecoder().decode(fsck.stdout));

    assertEquals((await inode(rootfs, "/"))?.uid, 0);
    for (
      const program of [
        "/usr/bin/git",
        "/usr/bin/curl",
        "/usr/bin/jq",
        "/usr/bin/socat",
        "/usr/sbin/sshd",
        "/usr/bin/ss",
        "/usr/bin/less",
        "/usr/bin/ps",
        "/usr/sbin/modprobe",
      ]
    ) {
      assert((await inode(rootfs, program)) !== undefined, `${program} is installed`);
    }
    assertEquals(
      await inode(rootfs, "/usr/bin/sudo"),
      { mode: 0o4755, uid: 0 },
      "setuid survives mkfs -d",
    );
    assertEquals(await inode(rootfs, agent.scriptPath), { mode: 0o755, uid: 0 });
    assertEquals(await inode(rootfs, networkBootstrap.scriptPath), { mode: 0o755, uid: 0 });
    assertEquals(await debugfs(rootfs, `cat ${sshdConfig.dropInPath}`), sshdConfig.dropIn);

    const ssh = await debugfs(rootfs, "ls /etc/ssh");
    assertEquals(ssh.includes("ssh_host_"), false, "no shared host keys");
    assertEquals(await debugfs(rootfs, "cat /etc/machine-id"), "");
    assertEquals((await debugfs(rootfs, "cat /etc/resolv.conf")).includes("nameserver"), false);
    assertStringIncludes(await debugfs(rootfs, "cat /etc/fstab"), "/dev/vdb /root ext4");
    assertEquals((await debugfs(rootfs, "ls /var/lib/apt/lists")).includes("Packages"), false);
    assertEquals(
      (await debugfs(rootfs, "ls /usr/share/doc")).trim().split(/\s+/).filter((w) =>
        /^[a-z]/.test(w)
      ),
      [],
    );
  },
);

gatedTest(
  "buildGoldenImage() refuses to run without root (run as uid 65534 through setpriv)",
  [root(), programs("setpriv")],
  async () => {
    await using denoDir = await ownerDenoDir();
    const module = new URL("../../catalog/golden_image.ts", import.meta.url).href;
    const script = `
      const { buildGoldenImage } = await import(${JSON.stringify(module)});
      try {
        await buildGoldenImage({ outDir: "/nonexistent/out", workDir: "/nonexistent/work", kernelRef: "k" });
        console.log("built");
      } catch (err) {
        console.log(JSON.stringify({ code: err.code, message: err.message }));
      }`;
    const [program, ...args] = asOwner([Deno.execPath(), "eval", script], {
      DENO_DIR: denoDir.path,
      HOME: "/nonexistent",
    });
    const out = await new Deno.Command(program, { args, stdin: "null" }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    const result = JSON.parse(text.split("\n").at(-1) ?? "{}");
    assertEquals(result.code, "permission_denied", text);
    assertStringIncludes(result.message, "debootstrap needs root");
  },
);
