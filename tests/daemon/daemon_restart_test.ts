import { assert, assertEquals, assertMatch, assertStringIncludes } from "../fixtures/assert.ts";
import { alive, daemonProcess } from "../fixtures/daemon_process.ts";
import { gatedTest, programs, root } from "../fixtures/requires.ts";
import { Store } from "../../store/db.ts";
import { listVms } from "../../store/vms.ts";

const needs = [root(), programs("ip", "nft", "mkfs.ext4", "debugfs", "pgrep")];

function vmmPids(home: string): number[] {
  const out = new Deno.Command("pgrep", {
    args: ["-f", `fake_firecracker.ts.*${home}`],
    stdout: "piped",
  }).outputSync();
  return new TextDecoder().decode(out.stdout).trim().split("\n").filter(Boolean).map(Number);
}

gatedTest(
  "a daemon restart leaves a running VM running, and the new daemon adopts it (root, netns)",
  needs,
  async () => {
    await using d = await daemonProcess();
    const created = await d.cli(["vm", "create", "--name", "keep", "--json"]);
    assertEquals(created.code, 0, created.stderr);
    const vm = JSON.parse(created.stdout);
    assertEquals(vm.status, "running");
    const stop = await d.cli(["daemon", "stop"]);
    assertEquals(stop.code, 0, stop.stderr);
    assert(alive(vm.pid), "the VMM outlives the daemon");
    const show = await d.cli(["vm", "show", "keep", "--json"]);
    assertEquals(show.code, 0, show.stderr);
    const after = JSON.parse(show.stdout);
    assertEquals([after.status, after.pid, after.errors], ["running", vm.pid, []]);
  },
);

gatedTest(
  "kill -9 of the daemon mid-start, then restart: reconcile adopts the live VM and cleans the dead one (root, netns)",
  needs,
  async () => {
    await using d = await daemonProcess();
    // The guest's agent answers only after 60 s, so both creates hang in their boot step.
    await d.startDaemon({ FAKE_FC_AGENT_DELAY_MS: "60000" });
    const daemon = await d.daemonPid();
    const creates = [
      d.cli(["vm", "create", "--name", "live"]),
      d.cli(["vm", "create", "--name", "dead"]),
    ];
    const booting = () => {
      using store = Store.openReadOnly(`${d.home}/state/banger.db`);
      return listVms(store).filter((v) => v.status === "starting" && v.runtime.pid !== undefined)
        .length;
    };
    for (let i = 0; i < 300 && booting() < 2; i++) await new Promise((r) => setTimeout(r, 100));
    assertEquals(booting(), 2, "both VMs are in their boot step");
    assertEquals(vmmPids(d.home).length, 2, "both VMMs launched");
    Deno.kill(daemon ?? 0, "SIGKILL");
    await Promise.all(creates);
    // One guest dies while no daemon runs; the other keeps running. Its pid is read from
    // the handles the daemon persisted before it died.
    const rows = (() => {
      using store = Store.openReadOnly(`${d.home}/state/banger.db`);
      return listVms(store);
    })();
    const dead = rows.find((v) => v.name === "dead");
    assertEquals(dead?.status, "starting");
    const handles = JSON.parse(await Deno.readTextFile(`${dead?.runtime.vmDir}/handles.json`));
    Deno.kill(handles.pid, "SIGKILL");
    for (let i = 0; i < 100 && alive(handles.pid); i++) await new Promise((r) => setTimeout(r, 50));
    const list = await d.cli(["vm", "list", "--json"]);
    assertEquals(list.code, 0, list.stderr);
    const byName = Object.fromEntries(
      (JSON.parse(list.stdout) as { name: string; status: string; pid?: number; tap?: string }[])
        .map((v) => [v.name, v]),
    );
    assertEquals(byName.live.status, "running");
    assert(byName.live.pid && alive(byName.live.pid));
    assertEquals(byName.dead.status, "stopped");
    assertEquals(
      [byName.dead.pid, byName.dead.tap],
      [undefined, undefined],
      "the dead VM's handles are released",
    );
    const taps = await d.ns.exec(["ip", "-j", "link", "show", "type", "tun"]);
    const tapNames = (JSON.parse(taps) as { ifname: string }[]).map((t) => t.ifname);
    assert(tapNames.includes(byName.live.tap ?? "?"), "the live VM keeps its tap");
  },
);

gatedTest(
  "CLI errors name the daemon's message and op id, and exit 1 (root, netns)",
  needs,
  async () => {
    await using d = await daemonProcess();
    const r = await d.cli(["vm", "show", "nosuch"]);
    assertEquals(r.code, 1);
    assertMatch(
      r.stderr,
      /^error: Cannot find VM "nosuch" \(op-[0-9a-f]{8}\)\nhint: banger vm list\n$/,
    );
    const bad = await d.cli(["vm", "create", "--vcpu", "0"]);
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stderr, "Cannot use --vcpu 0: it must be a whole number from 1 to 32");
    const list = await d.cli(["vm", "list", "--json"]);
    assertEquals(JSON.parse(list.stdout), [], "the invalid spec left no row");
  },
);
