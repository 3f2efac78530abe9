/**
 * `banger doctor`: is this host ready to run banger?
 *
 * @module
 */

import { type CommandDef, Flags } from "./command_line.ts";
import type { CliEnv } from "./env.ts";
import { renderTable } from "./output.ts";

/** The `doctor` command. */
export const doctorCommand: CommandDef<CliEnv> = {
  name: "doctor",
  summary: "Check that this host can run banger, with a fix for each problem",
  description: "Checks the architecture, KVM, the VMM, kernel devices, host tools, the " +
    "store and banger's directories. Exits 1 when any check FAILs. Runs without the daemon.",
  flags: [{ name: "json", kind: "bool", help: "Print JSON" }],
  examples: [
    "banger doctor",
    "banger doctor --json | jq '.checks[] | select(.status != \"PASS\")'",
  ],
  run: async (inv, env) => {
    const report = await env.local.doctor();
    const failed = report.checks.some((c) => c.status === "FAIL");
    if (new Flags(inv).bool("json")) {
      env.out(JSON.stringify({ ok: !failed, ...report }, null, 2) + "\n");
    } else {
      env.out(renderTable(
        ["STATUS", "CHECK", "DETAIL"],
        report.checks.map((c) => [c.status, c.name, c.detail]),
      ));
      const fixes = report.checks.filter((c) => c.status !== "PASS" && c.fix);
      if (fixes.length) {
        env.out("\nTo fix:\n");
        for (const c of fixes) env.out(`  ${c.name}: ${c.fix}\n`);
      }
    }
    return failed ? 1 : 0;
  },
};
