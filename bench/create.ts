/**
 * VM create overhead. With the simulated fake firecracker (its guest "boots" at once),
 * everything measured is banger's own host-side work: p50/p95 of 20 sequential creates
 * (goal p50 ≤ 50 ms) against launching the fake VMM alone in the same run, and 8 parallel
 * creates against one (goal wall ≤ 1.5×, medians of 5 rounds each). With a real
 * guest under QEMU, the per-stage timings of `vm run -- true` as the daemon reports them.
 *
 * @module
 */

import { vmHarness } from "../tests/fixtures/vm_harness.ts";
import { FAKE_FIRECRACKER } from "../tests/fixtures/fake_firecracker.ts";
import { Firecracker } from "../host/vmm/firecracker/firecracker.ts";
import { InProcessOps } from "../host/privileged/in_process_ops.ts";
import { SmokeEnv } from "../smoke/env.ts";
import { heading, median, ms, percentile, row } from "./_stats.ts";

async function simulated(): Promise<void> {
  await using h = await vmHarness();
  const vms = h.services.vms;
  await vms.create({ name: "warmup" }, h.ctx());
  const times: number[] = [];
  const withoutVmm: number[] = [];
  const stages = new Map<string, number[]>();
  for (let i = 0; i < 20; i++) {
    const marks: [string, number][] = [];
    const t0 = performance.now();
    const ctx = {
      ...h.ctx(),
      progress: (stage: string) => {
        if (marks.at(-1)?.[0] !== stage) marks.push([stage, performance.now() - t0]);
      },
    };
    await vms.create({ name: `seq-${i}` }, ctx);
    const total = performance.now() - t0;
    times.push(total);
    marks.forEach(([stage, at], j) => {
      const took = (j + 1 < marks.length ? marks[j + 1][1] : total) - at;
      stages.set(stage, [...(stages.get(stage) ?? []), took]);
      if (stage === "vmm") withoutVmm.push(total - took);
    });
  }
  await vms.delete(vms.list().map((v) => v.id), h.ctx());
  // Five samples of each, medians compared: one sample of each is mostly noise.
  const ones: number[] = [];
  const eights: number[] = [];
  for (let round = 0; round < 5; round++) {
    const one = performance.now();
    await vms.create({ name: `solo-${round}` }, h.ctx());
    ones.push(performance.now() - one);
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => vms.create({ name: `par-${round}-${i}` }, h.ctx())),
    );
    eights.push(performance.now() - t0);
    await vms.delete(vms.list().map((v) => v.id), h.ctx());
  }
  const oneMs = median(ones);
  const eightMs = median(eights);
  // The same run's baseline for a create: launching the (fake) VMM process alone.
  const launches = await timeVmmLaunch(5);
  heading("create (simulated guest: host-side overhead only)");
  row("create p50 (goal ≤ 50 ms)", ms(median(times)));
  row("VMM launch alone (fake firecracker), p50", ms(median(launches)));
  row("ratio create / VMM launch alone", `${(median(times) / median(launches)).toFixed(2)}×`);
  row("create p95", ms(percentile(times, 95)));
  for (const [stage, t] of stages) row(`  stage ${stage}, p50`, ms(median(t)));
  // The fake VMM is a Deno program (~40 ms to start); Firecracker starts in ~12 ms.
  row("create p50 without the (fake) VMM launch", ms(median(withoutVmm)));
  row("1 create wall, p50 of 5", ms(oneMs));
  row("8 parallel creates wall, p50 of 5", ms(eightMs));
  row("ratio 8 parallel / 1 (goal ≤ 1.5×)", `${(eightMs / oneMs).toFixed(2)}×`);
}

/** Wall time of `Firecracker.launch` + kill of the fake VMM, `n` times. */
async function timeVmmLaunch(n: number): Promise<number[]> {
  const procs = new InProcessOps({ stateDir: "/tmp", cacheDir: "/tmp", runtimeDir: "/tmp" });
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgb-launch-" });
    try {
      const t0 = performance.now();
      const vmm = await Firecracker.launch({
        binary: FAKE_FIRECRACKER,
        vmDir: dir,
        id: "b",
        procs,
      });
      out.push(performance.now() - t0);
      await vmm.kill("SIGKILL");
      await vmm.waitForExit(5000);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  return out;
}

const STAGES_SCRIPT = `
import { RpcClient } from "${
  new URL("../commands/client/rpc_client.ts", import.meta.url).pathname
}";
import { vmCreate, vmDelete } from "${new URL("../daemon/api/vm.ts", import.meta.url).pathname}";
const client = new RpcClient(Deno.env.get("BANGER_HOME") + "/run/daemon.sock");
const stages = [];
const t0 = performance.now();
const vm = await client.call(vmCreate, { name: "bench-" + Date.now().toString(36) }, {
  onProgress: (e) => { stages.push([e.stage, e.elapsed_ms]); },
});
const created = performance.now() - t0;
console.log(JSON.stringify({ stages, created }));
await client.call(vmDelete, { refs: [vm.name], force: true });
`;

async function realGuest(): Promise<void> {
  const env = await SmokeEnv.create("qemu", () => {});
  try {
    // Warm the image and kernel (the first pull) so the timings below are a plain create.
    await env.banger(["vm", "run", "--rm", "--", "true"]);
    const t0 = performance.now();
    const r = await env.banger(["vm", "run", "--rm", "--", "true"]);
    const total = performance.now() - t0;
    if (r.code !== 0) throw new Error(r.stderr);
    heading("vm run -- true on a real guest (QEMU)");
    row("wall, create → command → delete", ms(total));
    const script = `${env.home}/stages.ts`;
    await Deno.writeTextFile(script, STAGES_SCRIPT);
    const out = await env.exec(["deno", "run", "-A", "--quiet", script]);
    if (out.code !== 0) throw new Error(out.stderr);
    const { stages, created } = JSON.parse(out.stdout.trim().split("\n").pop() ?? "{}") as {
      stages: [string, number][];
      created: number;
    };
    const firsts = stages.filter((s, i) => i === 0 || stages[i - 1][0] !== s[0]);
    for (let i = 0; i < firsts.length; i++) {
      const [name, at] = firsts[i];
      const next = i + 1 < firsts.length ? firsts[i + 1][1] : created;
      row(`  stage ${name}`, ms(next - at));
    }
    row("create total (to guest ready)", ms(created));
    // The root disk grown to 8 GiB (sparse, and / grown at boot) against one left at the
    // image's size (64M is below it), three creates each, alternating.
    const grown: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < 3; i++) {
      for (const [size, into] of [["8G", grown], ["64M", plain]] as const) {
        const t = performance.now();
        const c = await env.banger([
          "vm",
          "create",
          "--name",
          `g${i}-${size}`.toLowerCase(),
          "--system-overlay-size",
          size,
        ]);
        if (c.code !== 0) throw new Error(c.stderr);
        into.push(performance.now() - t);
        await env.banger(["vm", "delete", "-f", `g${i}-${size}`.toLowerCase()]);
      }
    }
    heading("vm create p50, root disk grown to 8 GiB vs left at the image's size (same run)");
    row("create p50, root grown to 8 GiB", ms(median(grown)));
    row("create p50, root at the image's size", ms(median(plain)));
    row("ratio grown / not grown", `${(median(grown) / median(plain)).toFixed(2)}×`);
  } finally {
    await env.teardown();
  }
}

/** Runs the benchmark and prints its figures. */
export async function main(): Promise<void> {
  await simulated();
  await realGuest();
}

if (import.meta.main) await main();
