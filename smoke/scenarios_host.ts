/**
 * Host integration scenarios: NAT rules, `.vm` DNS, ssh-config, host keys, doctor,
 * surviving daemon restarts and crashes, and a second banger instance beside the first.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "../tests/fixtures/assert.ts";
import { diskHolders, expectOk, json, type Scenario, type ScenarioContext } from "./scenario.ts";
import { taskFlags } from "../tests/fixtures/banger_cli.ts";
import { instanceFor } from "../host/instance.ts";

const ROOT = new URL("../", import.meta.url).pathname;

interface VmJson {
  id: string;
  name: string;
  status: string;
  pid?: number;
  guest_ip: string;
}

/** The host integration scenarios. */
export const HOST_SCENARIOS: Scenario[] = [
  {
    name: "nat",
    description: "--nat installs the VM's masquerade rule; a running VM without it has none",
    class: "pure",
    async run(c) {
      const withNat = json<VmJson>(
        await c.ok(["vm", "create", "--name", c.vmName("nat"), "--nat", "--json"]),
      );
      const without = json<VmJson>(
        await c.ok(["vm", "create", "--name", c.vmName("nonat"), "--json"]),
      );
      assertEquals(without.status, "running", "the VM without NAT runs too");
      const rules =
        (await c.env.exec(["nft", "-j", "list", "table", "ip", c.env.instance.nftTable])).stdout;
      const mine = natRules(rules, withNat.id);
      assertEquals(mine.length > 0, true, `a rule for the VM with --nat: ${rules}`);
      assert(
        mine.some((r) => JSON.stringify(r).includes('"masquerade"')),
        `the VM's rule masquerades: ${JSON.stringify(mine)}`,
      );
      assertStringIncludes(JSON.stringify(mine), withNat.guest_ip);
      assertEquals(natRules(rules, without.id), [], "no rule for the running VM without --nat");
      await c.ok(["vm", "delete", "-f", withNat.name, without.name]);
      const after =
        (await c.env.exec(["nft", "-j", "list", "table", "ip", c.env.instance.nftTable])).stdout;
      assert(!after.includes(`banger-vm:${withNat.id}`), "delete removed the rule");
    },
  },
  {
    name: "dns",
    description: "<name>.vm resolves through the daemon's DNS; other names are refused",
    class: "pure",
    async run(c) {
      const vm = json<VmJson>(await c.ok(["vm", "create", "--name", c.vmName("dns"), "--json"]));
      const dig = (name: string) =>
        c.env.exec([
          "dig",
          "+short",
          "+tries=1",
          "+time=2",
          "-p",
          String(c.env.dnsPort),
          "@127.0.0.1",
          name,
        ]);
      assertEquals((await dig(`${vm.name}.vm`)).stdout.trim(), vm.guest_ip);
      const refused = await c.env.exec([
        "dig",
        "+tries=1",
        "+time=2",
        "-p",
        String(c.env.dnsPort),
        "@127.0.0.1",
        "example.com",
      ]);
      assertStringIncludes(refused.stdout, "status: REFUSED");
      await c.ok(["vm", "delete", "-f", vm.name]);
      assertEquals((await dig(`${vm.name}.vm`)).stdout.trim(), "", "the record goes with the VM");
    },
  },
  {
    name: "ssh_config",
    description: "ssh-config --install/--uninstall round trip in an isolated HOME",
    class: "pure",
    async run(c) {
      const home = `${c.scratch}/home`;
      await Deno.mkdir(`${home}/.ssh`, { recursive: true, mode: 0o700 });
      const original = "Host example\n  User me\n";
      await Deno.writeTextFile(`${home}/.ssh/config`, original);
      const env = { HOME: home };
      expectOk(await c.banger(["ssh-config", "--install"], { env }), "install");
      const installed = await Deno.readTextFile(`${home}/.ssh/config`);
      assertStringIncludes(installed, `Include ${c.env.home}/config/ssh_config`);
      assertStringIncludes(installed, original);
      expectOk(await c.banger(["ssh-config", "--install"], { env }), "install again");
      assertEquals(await Deno.readTextFile(`${home}/.ssh/config`), installed, "idempotent");
      expectOk(await c.banger(["ssh-config", "--uninstall"], { env }), "uninstall");
      assertEquals(
        await Deno.readTextFile(`${home}/.ssh/config`),
        original,
        "nothing else touched",
      );
    },
  },
  {
    name: "known_hosts",
    description:
      "the guest runs with the host key the daemon made and pinned before its first boot; vm delete removes the pin",
    class: "pure",
    async run(c) {
      const name = c.vmName("kh");
      const vm = json<VmJson>(await c.ok(["vm", "create", "--name", name, "--json"]));
      const made = (await Deno.readTextFile(
        `${c.env.home}/state/vms/${vm.id}/ssh_host_ed25519_key.pub`,
      )).split(" ")[1];
      const served =
        (await c.ok(["vm", "ssh", name, "--", "cat", "/etc/ssh/ssh_host_ed25519_key.pub"]))
          .stdout.split(" ")[1];
      assertEquals(served, made, "the guest serves the daemon's key");
      const known = `${c.env.home}/state/ssh/known_hosts`;
      assertStringIncludes(await Deno.readTextFile(known), `${name}.vm ssh-ed25519 ${made}\n`);
      await c.ok(["vm", "delete", "-f", name]);
      assert(!(await Deno.readTextFile(known)).includes(`${name}.vm`), "entry removed");
    },
  },
  {
    name: "doctor",
    description: "doctor reports no FAIL for the run's setup",
    class: "pure",
    async run(c) {
      const r = await c.banger(["doctor", "--json"]);
      const report = JSON.parse(r.stdout) as {
        ok: boolean;
        checks: { name: string; status: string }[];
      };
      const failed = report.checks.filter((x) => x.status === "FAIL").map((x) => x.name);
      assertEquals(failed, []);
      assertEquals(r.code, 0);
    },
  },
  {
    name: "daemon_restart",
    description: "a daemon restart (a new daemon process) keeps a running VM running and reachable",
    class: "global",
    async run(c) {
      const name = c.vmName("dr");
      const vm = json<VmJson>(await c.ok(["vm", "create", "--name", name, "--json"]));
      const pidFile = `${c.env.home}/run/daemon.pid`;
      const before = (await Deno.readTextFile(pidFile)).trim();
      await c.ok(["daemon", "stop"]);
      await c.ok(["daemon", "start"]);
      const after0 = (await Deno.readTextFile(pidFile)).trim();
      assert(after0 !== before, `the daemon restarted (pid ${before} → ${after0})`);
      // Gone, or a zombie nobody reaped yet (kill -0 succeeds on those).
      const gone = await c.env.exec([
        "sh",
        "-c",
        `for i in $(seq 50); do grep -qs '^State:[[:space:]]*[^Z]' /proc/${before}/status || exit 0; ` +
        `sleep 0.2; done; echo alive`,
      ]);
      assertEquals(gone.stdout.trim(), "", "the old daemon exited");
      const after = json<VmJson>(await c.ok(["vm", "show", name, "--json"]));
      assertEquals([after.status, after.pid], ["running", vm.pid]);
      assertEquals(
        (await c.ok(["vm", "ssh", name, "--", "echo", "still-here"])).stdout.trim(),
        "still-here",
      );
      await c.ok(["vm", "delete", "-f", name]);
    },
  },
  {
    name: "daemon_kill9",
    description:
      "kill -9 of the daemon mid-create, then restart, leaves no VMM, open disk, loop, tap or NAT rule",
    class: "global",
    async run(c) {
      const name = c.vmName("k9");
      const create = c.banger(["vm", "create", "--name", name]);
      // Wait until the VMM runs (the guest is booting), then kill the daemon hard.
      let launched = false;
      for (let i = 0; i < 600 && !launched; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const shown = await c.env.banger(["vm", "show", name, "--json"]).catch(() => undefined);
        launched = shown?.code === 0 && json<VmJson>(shown).pid !== undefined;
      }
      assert(launched, "the VMM started");
      const daemon = (await Deno.readTextFile(`${c.env.home}/run/daemon.pid`)).trim();
      await c.env.exec(["kill", "-9", daemon]);
      await create;
      const shown = json<VmJson>(await c.ok(["vm", "show", name, "--json"]));
      assert(
        shown.status === "running" || shown.status === "stopped",
        `reconciled to ${shown.status}`,
      );
      await c.ok(["vm", "delete", "-f", name]);
      const vmms = await c.env.exec([
        "sh",
        "-c",
        `pgrep -af '${c.env.home}/state/vm[s]/${shown.id}/' || true`,
      ]);
      assertEquals(vmms.stdout.trim(), "", "no VMM of the VM left");
      const loops = await c.env.exec(["sh", "-c", `losetup -a | grep -c ${c.env.home} || true`]);
      assertEquals(loops.stdout.trim(), "0", "no loop device left");
      assertEquals(await diskHolders(c, shown.id), [], "nothing holds the VM's disks");
      const taps = await c.env.exec(["ip", "-j", "link", "show", "type", "tun"]);
      const tapNames = (JSON.parse(taps.stdout || "[]") as { ifname: string }[]).map((t) =>
        t.ifname
      );
      // No VM is left, so every tap is one of the pool's idle ones (tap_pool_size = 2).
      assert(tapNames.length <= 2, `taps beyond the idle pool are left: ${tapNames.join(", ")}`);
      const rules =
        (await c.env.exec(["nft", "-j", "list", "table", "ip", c.env.instance.nftTable])).stdout;
      assertEquals(natRules(rules, shown.id), [], "no NAT rule left for the VM");
    },
  },
  {
    name: "two_instances",
    description:
      "a second daemon with the first's network is refused naming it; with its own it runs a VM, and the first's VM, NAT rule and taps survive",
    class: "global",
    async run(c) {
      const first = json<VmJson>(
        await c.ok(["vm", "create", "--name", c.vmName("one"), "--nat", "--json"]),
      );
      const mine = c.env.instance;
      const before = await hostState(c, first.id);
      assert(before.nat, "the first VM's NAT rule is installed");
      const home = `${c.scratch}/second`;
      await Deno.mkdir(`${home}/config`, { recursive: true, mode: 0o700 });
      const base = await Deno.readTextFile(`${c.env.home}/config/config.toml`);
      const second = (args: string[]) =>
        c.env.exec(["deno", "run", ...taskFlags(), `${ROOT}main.ts`, ...args], {
          env: { BANGER_HOME: home },
          timeoutMs: 300_000,
        });
      const refusals: [string, string, RegExp][] = [
        [
          "the same config",
          base,
          new RegExp(`bridge "${c.env.bridge}" belongs to banger instance ${mine.id}`),
        ],
        [
          "another bridge on the same CIDR",
          base.replace(/bridge_name = .*/, 'bridge_name = "bg-second"'),
          new RegExp(
            `routed through "${c.env.bridge}" \\(the bridge of banger instance ${mine.id}`,
          ),
        ],
        [
          "its own network but the same DNS port",
          base.replace(/bridge_name = .*/, 'bridge_name = "bg-second"') +
          'cidr = "172.16.77.0/24"\nbridge_ip = "172.16.77.1"\n',
          /Cannot serve the \.vm zone on 127\.0\.0\.1:\d+.*dns_listen/,
        ],
      ];
      for (const [what, config, message] of refusals) {
        await Deno.writeTextFile(`${home}/config/config.toml`, moveTables(config));
        const r = await second(["vm", "list"]);
        assert(r.code !== 0, `${what}: the second daemon was refused`);
        assert(message.test(r.stderr), `${what}: ${r.stderr.trim()}`);
      }
      survived(before, await hostState(c, first.id), "after the refusals");
      await Deno.writeTextFile(
        `${home}/config/config.toml`,
        moveTables(
          base.replace(/bridge_name = .*/, 'bridge_name = "bg-second"')
            .replace(
              /dns_listen = "127\.0\.0\.1:(\d+)"/,
              (_, p) => `dns_listen = "127.0.0.1:${Number(p) + 1}"`,
            ) +
            'cidr = "172.16.77.0/24"\nbridge_ip = "172.16.77.1"\n',
        ),
      );
      const other = json<VmJson>(
        expectOk(
          await second(["vm", "create", "--name", "two", "--nat", "--json"]),
          "second create",
        ),
      );
      assert(
        other.guest_ip.startsWith("172.16.77."),
        `the second instance's own CIDR: ${other.guest_ip}`,
      );
      expectOk(await second(["vm", "delete", "-f", "two"]), "second delete");
      expectOk(await second(["daemon", "stop"]), "second stop");
      const theirs = instanceFor(`${home}/state`);
      const taps = (await c.env.exec(["ip", "-o", "link", "show"])).stdout;
      assert(!taps.includes(theirs.tapPrefix), `the second left no tap: ${taps}`);
      // What a second instance keeps on the host by design: its bridge and its nft tables.
      const cleanups = [
        ["ip", "link", "del", "bg-second"],
        ["nft", "delete", "table", "ip", theirs.nftTable],
        ["nft", "delete", "table", "bridge", theirs.nftTable],
      ];
      for (const cmd of cleanups) {
        const r = await c.env.exec(cmd);
        assertEquals(r.code, 0, `${cmd.join(" ")}: ${r.stderr}`);
      }
      survived(before, await hostState(c, first.id), "after the second's start, run and stop");
      assertEquals(
        (await c.ok(["vm", "ssh", first.name, "--", "echo", "still-here"])).stdout.trim(),
        "still-here",
      );
      await c.ok(["vm", "delete", "-f", first.name]);
    },
  },
  {
    name: "publish",
    description:
      "-p and vm port publish reach a guest server from the host's 127.0.0.1, survive a daemon restart; a taken port names its holder; delete leaves no listener",
    class: "global",
    async run(c) {
      const name = c.vmName("pub");
      const base = 18000 + Math.floor(Math.random() * 900);
      const fetchOn = async (port: number) => {
        const r = await c.env.exec([
          "deno",
          "eval",
          `try { const r = await fetch("http://127.0.0.1:${port}/"); console.log(r.status, await r.text()); } catch (e) { console.log("refused", e.name, String(e.cause ?? e.message)); }`,
        ]);
        return r.stdout.trim();
      };
      await c.ok(["vm", "create", "--name", name, "-p", `${base}:8000`]);
      // A tiny HTTP server that reads the request before answering (a socket closed with
      // unread data sends a reset, which would discard the answer on its way back).
      const server = [
        "while IFS= read -r l; do",
        `  case "$l" in "$(printf '\\r')"|"") break ;; esac`,
        "done",
        "printf 'HTTP/1.0 200 OK\\r\\n\\r\\nfrom-the-guest'",
        "",
      ].join("\n");
      await c.ok(["vm", "ssh", name, "--", "sh", "-c", "cat > /root/http.sh"], { stdin: server });
      await c.ok([
        "vm",
        "ssh",
        name,
        "--",
        "sh",
        "-c",
        `nohup socat TCP-LISTEN:8000,fork,reuseaddr SYSTEM:"sh /root/http.sh" >/dev/null 2>&1 &`,
      ]);
      // The guest's server is up once the agent reports it (as in the ports scenario).
      let listening = false;
      for (let i = 0; i < 40 && !listening; i++) {
        listening = (await c.ok(["vm", "ports", name, "--json"])).stdout.includes("8000");
        if (!listening) await new Promise((r) => setTimeout(r, 500));
      }
      assert(listening, "the guest listens on 8000");
      let answer = "";
      for (let i = 0; i < 20 && !answer.startsWith("200"); i++) {
        answer = await fetchOn(base);
        if (!answer.startsWith("200")) await new Promise((r) => setTimeout(r, 500));
      }
      assertEquals(answer, "200 from-the-guest", "-p reaches the guest");
      await c.ok(["vm", "port", "publish", name, `${base + 1}:8000`]);
      assertEquals(await fetchOn(base + 1), "200 from-the-guest", "published on a running VM");
      const list = JSON.parse((await c.ok(["vm", "port", "list", name, "--json"])).stdout) as {
        ports: { host_port: number; guest_port: number; active: boolean }[];
      };
      assertEquals(
        list.ports.map((p) => [p.host_port, p.guest_port, p.active]),
        [[base, 8000, true], [base + 1, 8000, true]],
      );
      const other = await c.banger([
        "vm",
        "create",
        "--name",
        c.vmName("pub2"),
        "-p",
        `${base}:80`,
      ]);
      assert(other.code !== 0, "a second VM cannot take the port");
      assertStringIncludes(other.stderr, `127.0.0.1:${base} is in use by VM "${name}"`);
      await c.banger(["vm", "delete", "-f", c.vmName("pub2")]);
      await c.ok(["daemon", "stop"]);
      await c.ok(["daemon", "start"]);
      assertEquals(await fetchOn(base), "200 from-the-guest", "after a daemon restart");
      await c.ok(["vm", "port", "unpublish", name, String(base + 1)]);
      assertStringIncludes(await fetchOn(base + 1), "refused", "unpublished");
      await c.ok(["vm", "delete", "-f", name]);
      assertStringIncludes(await fetchOn(base), "refused", "no listener after delete");
    },
  },
];

/** The rules of nft's JSON listing whose comment names VM `id`. */
function natRules(nftJson: string, id: string): unknown[] {
  if (!nftJson.trim()) return [];
  const doc = JSON.parse(nftJson) as { nftables: { rule?: { comment?: string } }[] };
  return doc.nftables.filter((e) => e.rule?.comment?.includes(`banger-vm:${id}`));
}

/** What the first instance has on the host: its taps, its VM's VMM and its NAT rule. */
async function hostState(
  c: ScenarioContext,
  vmId: string,
): Promise<HostState> {
  const links = (await c.env.exec(["ip", "-o", "link", "show"])).stdout;
  const taps = [...links.matchAll(/^\d+: ([^:@]+)/gm)].map((m) => m[1])
    .filter((n) => n.startsWith(c.env.instance.tapPrefix)).sort();
  const shown = json<VmJson>(await c.ok(["vm", "show", vmId, "--json"]));
  const rules = (await c.env.exec(["nft", "-j", "list", "table", "ip", c.env.instance.nftTable]))
    .stdout;
  return { taps, pid: shown.pid, nat: rules.includes(`banger-vm:${vmId}`) };
}

interface HostState {
  taps: string[];
  pid?: number;
  nat: boolean;
}

/** The VM runs in the same VMM, its NAT rule is there, and no tap it had is gone. */
function survived(before: HostState, after: HostState, when: string): void {
  assertEquals([after.pid, after.nat], [before.pid, true], `the first VM and its NAT, ${when}`);
  const lost = before.taps.filter((t) => !after.taps.includes(t));
  assertEquals(lost, [], `no tap of the first instance lost ${when}`);
}

/** The second home's config keeps every line but the ones under test. */
function moveTables(config: string): string {
  // Keys after a [table] header would belong to it: put the top-level network keys first.
  const lines = config.split("\n");
  const top = lines.filter((l) => /^(cidr|bridge_ip) =/.test(l));
  return [...top, ...lines.filter((l) => !/^(cidr|bridge_ip) =/.test(l))].join("\n");
}
