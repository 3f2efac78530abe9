import { agent } from "../../../catalog/guest/agent.ts";
import { firstBoot } from "../../../catalog/guest/first_boot.ts";
import { guestPieces, writeGuestPieces } from "../../../catalog/guest/inject.ts";
import { networkBootstrap } from "../../../catalog/guest/network_bootstrap.ts";
import { sshdConfig } from "../../../catalog/guest/sshd_config.ts";
import { assert, assertEquals, assertStringIncludes } from "../../fixtures/assert.ts";

async function tree(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "bgt-inject-" });
  for (const d of ["etc/ssh", "var/lib", "usr/local"]) {
    await Deno.mkdir(`${root}/${d}`, { recursive: true });
  }
  await Deno.writeTextFile(`${root}/etc/fstab`, "# UNCONFIGURED FSTAB\n");
  return root;
}

const mode = async (path: string) => ((await Deno.stat(path)).mode ?? 0) & 0o7777;

Deno.test("writeGuestPieces() installs scripts 0755, units and config 0644, and enables the units", async () => {
  const root = await tree();
  try {
    await writeGuestPieces(root, guestPieces());
    await writeGuestPieces(root, guestPieces()); // a second run replaces, never fails
    for (const script of [networkBootstrap.scriptPath, agent.scriptPath]) {
      assertEquals(await mode(`${root}${script}`), 0o755, script);
    }
    assertEquals(await Deno.readTextFile(`${root}${agent.scriptPath}`), agent.script);
    assertEquals(await mode(`${root}${sshdConfig.dropInPath}`), 0o644);
    assertStringIncludes(await Deno.readTextFile(`${root}/etc/fstab`), "/dev/vdb /root ext4");
    for (
      const [unit, target] of [
        [networkBootstrap.unitName, "multi-user.target.wants"],
        [networkBootstrap.unitName, "network-online.target.wants"],
        [agent.unitName, "multi-user.target.wants"],
        [sshdConfig.hostKeysUnitName, "multi-user.target.wants"],
        [sshdConfig.hostKeysUnitName, "ssh.service.requires"],
      ]
    ) {
      const link = `${root}/etc/systemd/system/${target}/${unit}`;
      const dest = await Deno.readLink(link);
      assertEquals(dest, `/etc/systemd/system/${unit}`);
      assertEquals(await mode(`${root}${dest}`), 0o644);
    }
    assertEquals(
      await Deno.readLink(`${root}/etc/systemd/system/systemd-networkd-wait-online.service`),
      "/dev/null",
    );
    assertEquals(await Deno.readLink(`${root}/etc/systemd/network/99-default.link`), "/dev/null");
    assertEquals(await Deno.lstat(`${root}${firstBoot.scriptPath}`).catch(() => null), null);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("guestPieces() adds the first-boot script and its marker only when asked", async () => {
  const root = await tree();
  try {
    await writeGuestPieces(root, guestPieces({ firstBoot: true }));
    assertEquals(await mode(`${root}${firstBoot.scriptPath}`), 0o755);
    assertEquals(await Deno.readTextFile(`${root}${firstBoot.markerPath}`), "");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("guestPieces() lists parents before children and every unit's program is installed", () => {
  const pieces = guestPieces({ firstBoot: true });
  const dirs = new Set(["/", "/etc", "/usr", "/var"]);
  const files = new Set<string>();
  for (const p of pieces) {
    const parent = p.path.slice(0, p.path.lastIndexOf("/")) || "/";
    assert(dirs.has(parent), `${p.path} comes after its parent ${parent}`);
    if (p.kind === "dir") dirs.add(p.path);
    if (p.kind === "file") files.add(p.path);
  }
  for (const p of pieces) {
    if (p.kind !== "file" || !p.path.endsWith(".service")) continue;
    const exec = /^ExecStart=(\S+)/m.exec(p.content)?.[1] ?? "";
    // /bin/sh is in every image (merged /usr or not).
    const present = exec.startsWith("/usr/bin/") || exec === "/bin/sh" || files.has(exec);
    assert(present, `${p.path} runs ${exec}`);
  }
});

Deno.test("the sshd drop-in allows root by key only and names the per-VM host key", () => {
  for (
    const line of [
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "AuthorizedKeysFile /root/.ssh/authorized_keys",
      "HostKey /etc/ssh/ssh_host_ed25519_key",
    ]
  ) {
    assertStringIncludes(sshdConfig.dropIn, `${line}\n`);
  }
  assertStringIncludes(sshdConfig.hostKeysUnit, "RequiresMountsFor=/root\n");
  assertStringIncludes(sshdConfig.hostKeysUnit, '"$$p" "$$k"');
});

Deno.test("the host-key unit installs the daemon's key when given one, else generates one once", async () => {
  const exec = /^ExecStart=\/bin\/sh -c '(.*)'$/m.exec(sshdConfig.hostKeysUnit)?.[1] ?? "";
  const root = await Deno.makeTempDir({ prefix: "bgh-" });
  try {
    const script = exec.replaceAll("$$", "$").replaceAll("/etc/ssh/", `${root}/etc/`)
      .replaceAll("/root/.banger/", `${root}/banger/`);
    await Deno.mkdir(`${root}/etc`);
    await Deno.mkdir(`${root}/banger`);
    const boot = () => new Deno.Command("sh", { args: ["-c", script] }).output();
    const key = `${root}/etc/ssh_host_ed25519_key`;
    assertEquals((await boot()).code, 0);
    const generated = await Deno.readTextFile(`${key}.pub`);
    assertEquals((await boot()).code, 0);
    assertEquals(await Deno.readTextFile(`${key}.pub`), generated, "generated once, then kept");
    await Deno.writeTextFile(`${root}/banger/ssh_host_ed25519_key`, "PRIVATE\n");
    await Deno.writeTextFile(`${root}/banger/ssh_host_ed25519_key.pub`, "ssh-ed25519 AAAAgiven\n");
    assertEquals((await boot()).code, 0);
    assertEquals(await Deno.readTextFile(key), "PRIVATE\n");
    assertEquals(await Deno.readTextFile(`${key}.pub`), "ssh-ed25519 AAAAgiven\n");
    assertEquals(((await Deno.stat(key)).mode ?? 0) & 0o777, 0o600);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
