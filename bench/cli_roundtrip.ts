/**
 * CLI round trip: p50 of `banger daemon status` against a warm daemon, beside the p50 of
 * a bare `deno run` of an empty script (goal: ratio ≤ 1.5×), and the daemon's idle RSS
 * (goal: ≤ 80 MiB).
 *
 * @module
 */

import { taskFlags } from "../tests/fixtures/banger_cli.ts";
import { heading, median, ms, percentile, row, timeRuns } from "./_stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const RUNS = 40;

async function runQuiet(args: string[], env: Record<string, string>): Promise<void> {
  const out = await new Deno.Command("deno", { args, env, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

/** Reads VmRSS (KiB) of a process. */
function rssKib(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

/** Runs the benchmark and prints its figures. */
export async function main(): Promise<void> {
  const home = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgb-" });
  const env = { BANGER_HOME: home };
  // A daemon that runs no VM touches no interface; give it a DNS port of its own.
  await Deno.mkdir(`${home}/config`, { mode: 0o700 });
  await Deno.writeTextFile(
    `${home}/config/config.toml`,
    `dns_listen = "127.0.0.1:${43000 + Math.floor(Math.random() * 1000)}"\n`,
  );
  const empty = `${home}/empty.ts`;
  await Deno.writeTextFile(empty, "");
  const banger = ["run", ...taskFlags(), `${ROOT}main.ts`];
  try {
    await runQuiet([...banger, "daemon", "start"], env);
    const baseline = await timeRuns(RUNS, () => runQuiet(["run", "-q", empty], env));
    const status = await timeRuns(RUNS, () => runQuiet([...banger, "daemon", "status"], env));
    const pid = Number((await Deno.readTextFile(`${home}/run/daemon.pid`)).trim());
    heading("cli_roundtrip: `banger daemon status` vs bare `deno run empty.ts`");
    row("bare deno start, p50", ms(median(baseline)));
    row("banger daemon status, p50", ms(median(status)));
    row("banger daemon status, p95", ms(percentile(status, 95)));
    row("ratio p50 (goal ≤ 1.5×)", `${(median(status) / median(baseline)).toFixed(2)}×`);
    // Baseline from the same run: an idle deno process doing nothing but waiting.
    const idle = `${home}/idle.ts`;
    await Deno.writeTextFile(idle, "setInterval(() => {}, 1000);\n");
    const bare = new Deno.Command(Deno.execPath(), {
      args: ["run", "-q", idle],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await new Promise((r) => setTimeout(r, 1000));
    const bareKib = rssKib(bare.pid);
    bare.kill("SIGKILL");
    await bare.status;
    const daemonKib = rssKib(pid);
    row("idle bare deno RSS", `${(bareKib / 1024).toFixed(1)} MiB`);
    row("daemon idle RSS (goal ≤ 80 MiB)", `${(daemonKib / 1024).toFixed(1)} MiB`);
    row("ratio daemon / bare deno RSS", `${(daemonKib / bareKib).toFixed(2)}×`);
  } finally {
    await runQuiet([...banger, "daemon", "stop", "--force"], env).catch(() => {});
    await Deno.remove(home, { recursive: true });
  }
}

if (import.meta.main) await main();
