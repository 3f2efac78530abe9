import { renderGuestEnv } from "../../../catalog/guest/guest_env.ts";
import { networkBootstrap } from "../../../catalog/guest/network_bootstrap.ts";
import { assertEquals, assertStringIncludes } from "../../fixtures/assert.ts";

/** Shells the script must work under: dash (Debian's /bin/sh) and busybox (the initramfs). */
const SHELLS = [["sh"], ...(exists("/bin/busybox") ? [["/bin/busybox", "sh"]] : [])];

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

interface Fixture extends AsyncDisposable {
  root: string;
  run(
    shell: string[],
    env?: Record<string, string>,
  ): Promise<{ code: number; out: string; err: string }>;
}

/** A temp guest root with etc/, root/.banger/guest.env and a fake sysfs with `ifaces`. */
async function fixture(guestEnv: string, ifaces = ["lo", "eth0"]): Promise<Fixture> {
  const root = await Deno.makeTempDir({ prefix: "bgt-netboot-" });
  await Deno.mkdir(`${root}/etc`);
  await Deno.mkdir(`${root}/root/.banger`, { recursive: true });
  for (const i of ifaces) await Deno.mkdir(`${root}/sys/class/net/${i}`, { recursive: true });
  await Deno.writeTextFile(`${root}/root/.banger/guest.env`, guestEnv);
  await Deno.writeTextFile(`${root}/bootstrap`, networkBootstrap.script);
  return {
    root,
    async run(shell, env = {}) {
      const out = await new Deno.Command(shell[0], {
        args: [...shell.slice(1), `${root}/bootstrap`],
        env: { BANGER_ROOT: root, BANGER_SYSFS: `${root}/sys`, BANGER_DRY_RUN: "1", ...env },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: out.code, out: dec.decode(out.stdout), err: dec.decode(out.stderr) };
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(root, { recursive: true });
    },
  };
}

const ENV = renderGuestEnv({
  vmId: "a1b2",
  vmName: "dev",
  hostname: "dev",
  guestIp: "172.16.0.2/24",
  gateway: "172.16.0.1",
  dns: ["172.16.0.1", "9.9.9.9"],
});

Deno.test("banger-network-bootstrap configures eth0, DNS, hostname and hosts from guest.env (dry run)", async (t) => {
  for (const shell of SHELLS) {
    await t.step(shell.join(" "), async () => {
      await using f = await fixture(ENV);
      const r = await f.run(shell);
      assertEquals(r.code, 0, r.err);
      assertEquals(r.out.trim().split("\n"), [
        "+ ip link set lo up",
        "+ ip addr flush dev eth0",
        "+ ip addr add 172.16.0.2/24 dev eth0",
        "+ ip link set eth0 up",
        "+ ip route replace default via 172.16.0.1 dev eth0",
        "+ hostname dev",
      ]);
      assertEquals(
        await Deno.readTextFile(`${f.root}/etc/resolv.conf`),
        "# written by banger-network-bootstrap from guest.env\nnameserver 172.16.0.1\nnameserver 9.9.9.9\n",
      );
      assertEquals(await Deno.readTextFile(`${f.root}/etc/hostname`), "dev\n");
      assertStringIncludes(await Deno.readTextFile(`${f.root}/etc/hosts`), "127.0.1.1 dev\n");
    });
  }
});

Deno.test("banger-network-bootstrap uses the first non-loopback interface when there is no eth0", async () => {
  await using f = await fixture("BANGER_GUEST_IP=10.0.0.2/30\n", ["lo", "enp0s1"]);
  const r = await f.run(["sh"]);
  assertEquals(r.code, 0, r.err);
  assertStringIncludes(r.out, "+ ip addr add 10.0.0.2/30 dev enp0s1");
  assertEquals(r.out.includes("route"), false, "no gateway, no default route");
});

Deno.test("banger-network-bootstrap replaces a resolv.conf symlink with a file", async () => {
  await using f = await fixture(ENV);
  await Deno.symlink("../run/systemd/resolve/stub-resolv.conf", `${f.root}/etc/resolv.conf`);
  assertEquals((await f.run(["sh"])).code, 0);
  assertEquals((await Deno.lstat(`${f.root}/etc/resolv.conf`)).isFile, true);
});

Deno.test("banger-network-bootstrap rejects bad values and never executes the file", async (t) => {
  const cases: [string, string, string][] = [
    ["bad address", "BANGER_GUEST_IP=300.1.1.1/24\n", "BANGER_GUEST_IP=300.1.1.1/24"],
    ["no prefix", "BANGER_GUEST_IP=10.0.0.2\n", "expected a.b.c.d/prefix"],
    ["prefix too long", "BANGER_GUEST_IP=10.0.0.2/33\n", "expected a.b.c.d/prefix"],
    ["bad gateway", "BANGER_GUEST_IP=10.0.0.2/30\nBANGER_GATEWAY=gw\n", "BANGER_GATEWAY=gw"],
    ["bad hostname", "BANGER_GUEST_IP=10.0.0.2/30\nBANGER_HOSTNAME=Dev_1\n", "not a DNS label"],
    ["bad dns", "BANGER_GUEST_IP=10.0.0.2/30\nBANGER_DNS=1.1.1.1,x\n", "x is not an IPv4"],
    ["command substitution", "BANGER_GUEST_IP=$(touch pwned)/24\n", "BANGER_GUEST_IP"],
    ["no equals sign", "BANGER_GUEST_IP\n", "cannot parse line"],
  ];
  for (const [name, env, message] of cases) {
    await t.step(name, async () => {
      await using f = await fixture(env);
      const r = await f.run(["sh"]);
      assertEquals(r.code, 1);
      assertStringIncludes(r.err, message);
      assertEquals(r.out, "", "nothing was configured");
      assertEquals(exists(`${f.root}/pwned`) || exists("pwned"), false);
    });
  }
});

Deno.test("banger-network-bootstrap fails clearly without guest.env and ignores unknown keys", async () => {
  await using f = await fixture("BANGER_GUEST_IP=10.0.0.2/30\nFUTURE_KEY=1\n# comment\n");
  const r = await f.run(["sh"]);
  assertEquals(r.code, 0);
  assertStringIncludes(r.err, "ignoring unknown key FUTURE_KEY");
  await Deno.remove(`${f.root}/root/.banger/guest.env`);
  const missing = await f.run(["sh"]);
  assertEquals(missing.code, 1);
  assertStringIncludes(missing.err, "cannot read");
});
