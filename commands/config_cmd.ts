/**
 * `banger config show|check`: the configuration as banger reads it, without the daemon —
 * every setting with its default filled in, or the first problem with the key named.
 *
 * @module
 */

import { stringify as stringifyToml } from "smol-toml";
import { type CommandDef, Flags } from "./command_line.ts";
import type { CliEnv } from "./env.ts";

const configFlag = {
  name: "config",
  kind: "string" as const,
  placeholder: "FILE",
  help: "Read this file instead of the one in use",
  complete: "file" as const,
};

/** The `config` group. */
export const configCommand: CommandDef<CliEnv> = {
  name: "config",
  summary: "Show or check banger's configuration file",
  subcommands: [
    {
      name: "show",
      summary: "Print every setting, defaults filled in (TOML, or --json)",
      flags: [configFlag, { name: "json", kind: "bool", help: "Print JSON" }],
      examples: ["banger config show", "banger config show --config ./test.toml --json"],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const report = await env.local.readConfig(f.string("config"));
        if (f.bool("json")) {
          env.out(JSON.stringify(report, null, 2) + "\n");
          return 0;
        }
        env.out(`# ${report.path}${report.exists ? "" : " (no such file: all defaults)"}\n`);
        env.out(stringifyToml(report.settings) + "\n");
        return 0;
      },
    },
    {
      name: "check",
      summary: "Validate the file as the daemon would; exit 1 naming the bad key",
      flags: [configFlag],
      examples: ["banger config check", "banger config check --config /etc/banger/config.toml"],
      run: async (inv, env) => {
        const report = await env.local.readConfig(new Flags(inv).string("config"));
        env.out(
          report.exists
            ? `${report.path}: valid\n`
            : `${report.path}: no such file; banger uses the defaults\n`,
        );
        return 0;
      },
    },
  ],
};
