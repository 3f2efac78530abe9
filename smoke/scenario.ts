/**
 * What a smoke scenario is and what it gets to work with.
 *
 * @module
 */

import { assert, assertEquals } from "../tests/fixtures/assert.ts";
import type { BangerOptions, RunResult, SmokeEnv, SmokeVmm } from "./env.ts";

/**
 * How a scenario may run: `pure` ones run in parallel; `repodir` ones share the fixture
 * repo and run one after another; `global` ones touch host-wide state (`vm prune`, the
 * daemon) and run alone after the pool.
 */
export type ScenarioClass = "pure" | "repodir" | "global";

/** What a scenario gets. */
export interface ScenarioContext {
  env: SmokeEnv;
  /** Runs `banger <args>`. */
  banger(args: string[], o?: BangerOptions): Promise<RunResult>;
  /** Runs `banger <args>` and fails the scenario unless it exits 0. */
  ok(args: string[], o?: BangerOptions): Promise<RunResult>;
  /** A VM name unique to this run, e.g. `s-bare-3f`. */
  vmName(label: string): string;
  /** The shared fixture git repo (repodir scenarios). */
  repo: string;
  /** A scratch directory removed after the scenario. */
  scratch: string;
  /** Adds a line to the scenario's log. */
  log(line: string): void;
}

/** One named end-to-end scenario. */
export interface Scenario {
  name: string;
  /** One line for `--list`. */
  description: string;
  class: ScenarioClass;
  /** The environment it runs in. @default {"qemu"} */
  vmm?: SmokeVmm;
  run(ctx: ScenarioContext): Promise<void>;
}

/** Fails unless `r` exited 0, showing its stderr. */
export function expectOk(r: RunResult, what: string): RunResult {
  assertEquals(r.code, 0, `${what} failed: ${r.stderr.trim()}`);
  return r;
}

/** Fails unless `r` exited with `code`. */
export function expectCode(r: RunResult, code: number, what: string): void {
  assert(r.code === code, `${what}: expected exit ${code}, got ${r.code}: ${r.stderr.trim()}`);
}

/** Parses a JSON stdout. */
export function json<T = Record<string, unknown>>(r: RunResult): T {
  return JSON.parse(r.stdout) as T;
}

/**
 * What still holds VM `id`'s disks: processes with one of its files open and loop devices
 * backed by them. With device-mapper a root disk is a loop; without, it is a file the
 * VMM opens, so both are looked at (a bare `losetup -a` is empty without dm).
 */
export async function diskHolders(c: ScenarioContext, id: string): Promise<string[]> {
  const vmDir = `${c.env.home}/state/vms/${id}`;
  const r = await c.env.exec([
    "sh",
    "-c",
    `for f in /proc/[0-9]*/fd/*; do t=$(readlink "$f" 2>/dev/null) && ` +
    `case "$t" in "${vmDir}"/*) echo "$f -> $t";; esac; done; ` +
    `losetup -a | grep -F "${vmDir}/" || true`,
  ]);
  return r.stdout.split("\n").filter((l) => l.trim() !== "");
}
