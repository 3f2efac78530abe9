/**
 * `deno task smoke [--list] [--scenario a,b] [--jobs N]`: end-to-end scenarios that drive
 * the real CLI against real guests, exactly as a user does.
 *
 * Each run is isolated (its own namespaces, homes, daemons, bridges, DNS ports and
 * catalog mirrors) and removes everything it made, also when a scenario fails or the run
 * is interrupted. `pure` scenarios run in a pool of `--jobs` (default: the core count),
 * `repodir` ones one after another on the shared fixture repo, `global` ones alone at the
 * end. A failed scenario's log (CLI output, daemon log, serial consoles) is kept.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { Semaphore } from "../daemon/locks.ts";
import { SmokeEnv, type SmokeVmm } from "./env.ts";
import type { Scenario, ScenarioContext } from "./scenario.ts";
import { HOST_SCENARIOS } from "./scenarios_host.ts";
import { VM_SCENARIOS } from "./scenarios_vm.ts";
import { createFixtureRepo, WORKSPACE_SCENARIOS } from "./scenarios_workspace.ts";
import { guestArtifactsRequirements } from "../tests/fixtures/guest_artifacts.ts";
import { programs } from "../tests/fixtures/requires.ts";

/** Every scenario, in run order within its class. */
export const SCENARIOS: Scenario[] = [...VM_SCENARIOS, ...HOST_SCENARIOS, ...WORKSPACE_SCENARIOS];

interface Outcome {
  name: string;
  status: "passed" | "failed";
  ms: number;
  reason?: string;
  logFile?: string;
}

function parseArgs(args: string[]): { list: boolean; only?: string[]; jobs: number } {
  let list = false;
  let only: string[] | undefined;
  let jobs = navigator.hardwareConcurrency || 2;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--list") list = true;
    else if (a === "--scenario") only = (args[++i] ?? "").split(",").filter(Boolean);
    else if (a.startsWith("--scenario=")) only = a.slice(11).split(",").filter(Boolean);
    else if (a === "--jobs") jobs = Number(args[++i]);
    else if (a.startsWith("--jobs=")) jobs = Number(a.slice(7));
    else throw new Error(`Unknown argument "${a}" (use --list, --scenario a,b, --jobs N)`);
  }
  if (!Number.isInteger(jobs) || jobs < 1) {
    throw new Error("--jobs must be a whole number of at least 1");
  }
  return { list, only, jobs };
}

async function main(): Promise<number> {
  const opts = parseArgs(Deno.args);
  if (opts.list) {
    for (const s of SCENARIOS) {
      console.log(`${s.name.padEnd(22)} ${s.class.padEnd(8)} ${s.vmm ?? "qemu"}  ${s.description}`);
    }
    return 0;
  }
  const unknown = (opts.only ?? []).filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`Unknown scenario(s): ${unknown.join(", ")} (see --list)`);
  const chosen = SCENARIOS.filter((s) => !opts.only || opts.only.includes(s.name));
  // Everything smoke needs exists on the machine it runs on (./setup.sh installs it): a
  // missing piece is a failed run with the fix, never a green run that tested nothing.
  const missing = [
    ...guestArtifactsRequirements(),
    programs("qemu-system-x86_64", "ip", "nft", "dig", "git", "ssh"),
  ]
    .map((r) => r.missing).filter((m): m is string => !!m);
  if (missing.length) {
    for (const m of missing) console.log(`MISSING ${m}`);
    console.log(
      `0 passed, 0 failed, ${chosen.length} skipped: smoke cannot run here (${
        missing.join("; ")
      })` +
        "; run ./setup.sh as root, which installs everything smoke needs",
    );
    return 1;
  }
  const logDir = await Deno.makeTempDir({ prefix: "banger-smoke-" });
  const envs = new Map<SmokeVmm, SmokeEnv>();
  const repoDir = await Deno.makeTempDir({ prefix: "banger-smoke-repo-" });
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    console.log("\ninterrupted: cleaning up");
    cleanup().finally(() => Deno.exit(130));
  };
  const cleanup = async (): Promise<string[]> => {
    const leftovers = await Promise.all(
      [...envs.entries()].map(async ([vmm, e]) =>
        (await e.teardown()).map((l) => `${vmm} environment: ${l}`)
      ),
    );
    envs.clear();
    await Deno.remove(repoDir, { recursive: true }).catch(() => {});
    return leftovers.flat();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const started = performance.now();
  const outcomes: Outcome[] = [];
  let leftovers: string[] = [];
  try {
    await createFixtureRepo(repoDir);
    for (const vmm of new Set(chosen.map((s) => s.vmm ?? "qemu"))) {
      console.log(`preparing ${vmm} environment…`);
      envs.set(vmm, await SmokeEnv.create(vmm, () => {}));
    }
    const runOne = async (s: Scenario) => {
      if (interrupted) return;
      const o = await runScenario(s, envs.get(s.vmm ?? "qemu"), repoDir, logDir);
      outcomes.push(o);
      console.log(
        `${o.status === "passed" ? "ok  " : "FAIL"} ${s.name} (${(o.ms / 1000).toFixed(1)}s)${
          o.reason ? `: ${o.reason}` : ""
        }`,
      );
    };
    const pool = new Semaphore(opts.jobs, "a smoke job slot");
    const pure = chosen.filter((s) => s.class === "pure");
    const repodir = chosen.filter((s) => s.class === "repodir");
    // The repodir chain is one job of the pool: its scenarios run in order.
    await Promise.all([
      ...pure.map(async (s) => {
        using _slot = await pool.acquire();
        await runOne(s);
      }),
      (async () => {
        if (!repodir.length) return;
        using _slot = await pool.acquire();
        for (const s of repodir) await runOne(s);
      })(),
    ]);
    for (const s of chosen.filter((x) => x.class === "global")) await runOne(s);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    leftovers = await cleanup();
  }
  const passed = outcomes.filter((o) => o.status === "passed").length;
  const failed = outcomes.filter((o) => o.status === "failed");
  // A scenario that never reported (an interrupted run) counts as skipped.
  const skipped = chosen.length - passed - failed.length;
  console.log(
    `\n${passed} passed, ${failed.length} failed, ${skipped} skipped (${
      ((performance.now() - started) / 1000).toFixed(0)
    }s)`,
  );
  for (const f of failed) {
    console.log(`  ${f.name}: log kept at ${f.logFile}; it ends:`);
    // CI keeps only what is printed: the log's end says what the guest and daemon last did.
    const text = f.logFile ? await Deno.readTextFile(f.logFile).catch(() => "") : "";
    for (const l of text.trimEnd().split("\n").slice(-FAILED_LOG_TAIL)) console.log(`    ${l}`);
  }
  // Deleting every VM and stopping the daemon must leave no process, loop device or tap.
  for (const l of leftovers) console.log(`LEAK ${l}`);
  if (!failed.length) await Deno.remove(logDir, { recursive: true }).catch(() => {});
  if (passed === 0) console.log("FAIL no scenario ran");
  return failed.length || leftovers.length || skipped || passed === 0 ? 1 : 0;
}

let counter = 0;

async function runScenario(
  s: Scenario,
  env: SmokeEnv | undefined,
  repo: string,
  logDir: string,
): Promise<Outcome> {
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const t0 = performance.now();
  const scratch = await Deno.makeTempDir({ prefix: `banger-smoke-${s.name}-` });
  if (!env) return { name: s.name, status: "failed", ms: 0, reason: "no environment" };
  const tag = (++counter).toString(36) + crypto.randomUUID().slice(0, 3);
  const ctx: ScenarioContext = {
    env,
    repo,
    scratch,
    log,
    banger: (args, o) => {
      log(`$ banger ${args.join(" ")}`);
      return env.banger(args, o).then((r) => {
        log(r.stdout.trimEnd());
        if (r.stderr.trim()) log(`[stderr] ${r.stderr.trimEnd()}`);
        log(`[exit ${r.code}]`);
        return r;
      });
    },
    ok: async (args, o) => {
      const r = await ctx.banger(args, o);
      if (r.code !== 0) {
        throw new Error(`banger ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
      }
      return r;
    },
    vmName: (label) => `s-${label}-${tag}`.replace(/_/g, "-"),
  };
  try {
    await s.run(ctx);
    return { name: s.name, status: "passed", ms: performance.now() - t0 };
  } catch (err) {
    const reason = err instanceof Error ? summary(err.message) : String(err);
    const logFile = `${logDir}/${s.name}.log`;
    await Deno.writeTextFile(
      logFile,
      [
        ...lines,
        "",
        `FAILED: ${err instanceof Error ? err.stack : err}`,
        "",
        await env.diagnostics(),
      ].join("\n"),
    );
    return { name: s.name, status: "failed", ms: performance.now() - t0, reason, logFile };
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/**
 * A failure's first line and its last two: banger's stderr starts with progress lines and
 * ends with the error and its hint.
 */
function summary(message: string): string {
  const lines = message.split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.length > 3 ? [lines[0], "…", ...lines.slice(-2)].join(" ") : lines.join(" ");
}

/** How many lines of a failed scenario's log the summary prints. */
const FAILED_LOG_TAIL = 40;

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (err) {
    console.error(`error: ${err instanceof Error ? err.message : err}`);
    Deno.exit(2);
  }
}
