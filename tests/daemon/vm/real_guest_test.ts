/**
 * Real Debian guests through the real daemon and CLI, inside a network namespace: once
 * with the QEMU backend and once with the fake firecracker in QEMU mode (the Firecracker
 * code path, API calls and all). Each boots one VM and checks several things on it.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../../fixtures/assert.ts";
import { daemonProcess } from "../../fixtures/daemon_process.ts";
import { guestArtifacts, guestArtifactsRequirements } from "../../fixtures/guest_artifacts.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";
import type { ConfigOverrides } from "../../fixtures/seed_image.ts";

const needs = [...guestArtifactsRequirements(), programs("qemu-system-x86_64", "ip", "ssh", "dig")];

const VMMS: [string, ConfigOverrides, Record<string, string>][] = [
  ["qemu", { top: { vmm: '"qemu"' } }, {}],
  ["fake firecracker (QEMU mode)", {}, { FAKE_FC_MODE: "qemu" }],
];

for (const [label, overrides, daemonEnv] of VMMS) {
  gatedTest(
    `a real guest under ${label}: uname, exit codes, host key pinning, .vm DNS, no stray resolution, stop/start keeps /root (root, netns, qemu)`,
    needs,
    async (t) => {
      const art = await guestArtifacts();
      await using d = await daemonProcess({
        overrides: {
          ...overrides,
          top: { ...overrides.top, default_image_name: '"debian-real"' },
          vmDefaults: {
            vcpu: "2",
            memory_mib: "768",
            disk_size: '"512M"',
            system_overlay_size: '"1G"',
          },
        },
      });
      const cli = (args: string[]) => d.cli(args, daemonEnv);
      const ok = async (args: string[]) => {
        const r = await cli(args);
        assertEquals(r.code, 0, `banger ${args.join(" ")}: ${r.stderr}`);
        return r;
      };
      await ok(["kernel", "import", "debian-6.1-cloud", "--from", art.kernelDir]);
      await ok([
        "image",
        "register",
        "--name",
        "debian-real",
        "--rootfs",
        art.rootfs,
        "--kernel-ref",
        "debian-6.1-cloud",
      ]);
      await ok(["image", "promote", "debian-real"]);
      await ok(["vm", "create", "--name", "real"]);

      await t.step("vm ssh runs commands and the guest is the Debian cloud kernel", async () => {
        const r = await ok(["vm", "ssh", "real", "--", "uname", "-a"]);
        assertMatch(r.stdout, /^Linux real 6\.1\.\S+-cloud-amd64 /);
      });
      await t.step("an exit code passes through ssh quoting", async () => {
        assertEquals((await cli(["vm", "ssh", "real", "--", "sh", "-c", "exit 42"])).code, 42);
      });
      await t.step("the host key is pinned under real.vm", async () => {
        const known = await Deno.readTextFile(`${d.home}/state/ssh/known_hosts`);
        assertStringIncludes(known, "real.vm ssh-ed25519 ");
      });
      await t.step("the host resolves real.vm through the daemon's DNS", async () => {
        const shown = JSON.parse((await ok(["vm", "show", "real", "--json"])).stdout);
        const dig = await d.ns.exec([
          "dig",
          "+short",
          "+time=2",
          "+tries=1",
          "-p",
          String(d.dnsPort),
          "@127.0.0.1",
          "real.vm",
        ]);
        assertEquals(dig.trim(), shown.guest_ip);
      });
      await t.step("without NAT the guest resolves nothing outside", async () => {
        const r = await cli([
          "vm",
          "ssh",
          "real",
          "--",
          "sh",
          "-c",
          "timeout 3 getent hosts example.com; echo rc=$?",
        ]);
        assertMatch(r.stdout.trim(), /^rc=(2|124)$/);
      });
      await t.step("a file written in /root survives stop and start", async () => {
        await ok(["vm", "ssh", "real", "--", "sh", "-c", "echo kept > /root/marker"]);
        await ok(["vm", "stop", "real"]);
        const stopped = JSON.parse((await ok(["vm", "show", "real", "--json"])).stdout);
        assertEquals(stopped.status, "stopped");
        await ok(["vm", "start", "real"]);
        assertEquals(
          (await ok(["vm", "ssh", "real", "--", "cat", "/root/marker"])).stdout.trim(),
          "kept",
        );
      });
      await ok(["vm", "delete", "-f", "real"]);
      const known = await Deno.readTextFile(`${d.home}/state/ssh/known_hosts`);
      assert(!known.includes("real.vm"), "delete forgets the host key");
    },
  );
}
