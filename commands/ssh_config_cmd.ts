/**
 * `banger ssh-config [--install | --uninstall]`.
 *
 * @module
 */

import { sshConfigUpdate } from "../daemon/api/vm.ts";
import { type CommandDef, Flags, UsageError } from "./command_line.ts";
import { callDaemon } from "./client/daemon_control.ts";
import { type CliEnv, CliError } from "./env.ts";

/** The `ssh-config` command. */
export const sshConfigCommand: CommandDef<CliEnv> = {
  name: "ssh-config",
  summary: "Use `ssh <name>.vm` from your own ssh: show, install or remove the Include",
  description: "banger keeps ~/.config/banger/ssh_config (a Host block per VM). --install adds " +
    "a marked `Include` of it at the top of ~/.ssh/config; --uninstall removes exactly that " +
    "block. Nothing else in ~/.ssh/config is touched.",
  flags: [
    { name: "install", kind: "bool", help: "Add the Include to ~/.ssh/config" },
    { name: "uninstall", kind: "bool", help: "Remove the Include from ~/.ssh/config" },
  ],
  examples: ["banger ssh-config --install && ssh dev.vm"],
  run: async (inv, env) => {
    const f = new Flags(inv);
    if (f.bool("install") && f.bool("uninstall")) {
      throw new UsageError("--install and --uninstall cannot be combined", inv.path);
    }
    const home = Deno.env.get("HOME");
    if (!home) throw new CliError("Cannot find ~/.ssh/config: HOME is not set");
    const action = f.bool("install") ? "install" : f.bool("uninstall") ? "uninstall" : "show";
    const r = await callDaemon(env, sshConfigUpdate, { home, action });
    if (action === "show") {
      env.out(`${r.path}\n`);
      env.out(
        r.included
          ? `included from ${r.user_config}\n`
          : `not included; add it with: banger ssh-config --install\n  (or put "Include ${r.path}" at the top of ${r.user_config})\n`,
      );
    } else {
      env.out(
        `${
          r.changed
            ? (action === "install" ? "added" : "removed")
            : "already " + (action === "install" ? "present" : "absent")
        }: Include ${r.path} in ${r.user_config}\n`,
      );
    }
    return 0;
  },
};
