import { firstBoot } from "../../../catalog/guest/first_boot.ts";
import { assertEquals, assertStringIncludes } from "../../fixtures/assert.ts";

interface Plan {
  code: number;
  lines: string[];
}

/** Runs the script with RUN_PLAN=1 against an os-release text and a fake root. */
async function plan(osRelease: string, withSystemd = false): Promise<Plan> {
  const dir = await Deno.makeTempDir({ prefix: "bgt-firstboot-" });
  try {
    await Deno.writeTextFile(`${dir}/first-boot`, firstBoot.script);
    await Deno.writeTextFile(`${dir}/os-release`, osRelease);
    if (withSystemd) {
      await Deno.mkdir(`${dir}/root/usr/lib/systemd`, { recursive: true });
      await Deno.writeTextFile(`${dir}/root/usr/lib/systemd/systemd`, "", { mode: 0o755 });
    }
    const out = await new Deno.Command("sh", {
      args: [`${dir}/first-boot`],
      env: {
        RUN_PLAN: "1",
        OS_RELEASE_FILE: `${dir}/os-release`,
        BANGER_ROOT: `${dir}/root`,
        BANGER_FIRST_BOOT_MARKER: "/marker",
      },
      stdout: "piped",
    }).output();
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n")
      .filter((l) => !l.startsWith("+ mkdir") && !/^(\+ )?mount/.test(l));
    return { code: out.code, lines };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("banger-first-boot plan: execs systemd at once when the image has it", async () => {
  const p = await plan("ID=debian\n", true);
  assertEquals(p, { code: 0, lines: ["exec /usr/lib/systemd/systemd"] });
});

Deno.test("banger-first-boot plan: installs with apt on Debian, with services held off", async () => {
  const p = await plan('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n');
  assertEquals(p.code, 0);
  assertEquals(p.lines, [
    "systemd missing; package manager: apt",
    "write /usr/sbin/policy-rc.d (exit 101) while installing",
    "install apt: systemd-sysv udev openssh-server iproute2 socat ca-certificates",
    "+ env DEBIAN_FRONTEND=noninteractive apt-get update",
    "+ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd-sysv udev openssh-server iproute2 socat ca-certificates",
    "+ rm -f /usr/sbin/policy-rc.d",
    "+ rm -f /marker",
    "+ sync",
    "exec /lib/systemd/systemd",
  ]);
});

Deno.test("banger-first-boot plan: picks the package manager from ID, then ID_LIKE", async (t) => {
  const cases: [string, string, string][] = [
    ["ubuntu", "ID=ubuntu\n", "apt"],
    ["ID_LIKE fallback", 'ID=pop\nID_LIKE="ubuntu debian"\n', "apt"],
    ["fedora", 'ID="fedora"\n', "dnf"],
    ["rocky via ID_LIKE", 'ID=rocky\nID_LIKE="rhel centos fedora"\n', "dnf"],
    ["arch", "ID=arch\n", "pacman"],
    ["opensuse", 'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n', "zypper"],
  ];
  for (const [name, osRelease, manager] of cases) {
    await t.step(name, async () => {
      const p = await plan(osRelease);
      assertEquals(p.code, 0);
      assertEquals(p.lines[0], `systemd missing; package manager: ${manager}`);
    });
  }
});

Deno.test("banger-first-boot plan: refuses Alpine and unknown distributions", async () => {
  const alpine = await plan("ID=alpine\n");
  assertEquals(alpine.code, 1);
  assertStringIncludes(alpine.lines.join("\n"), "fail: Alpine has no systemd");
  const unknown = await plan("ID=plan9\n");
  assertEquals(unknown.code, 1);
  assertStringIncludes(unknown.lines.join("\n"), "cannot tell this image's package manager");
});
