/**
 * `banger system install|status|restart|uninstall` and `banger helper`: the system
 * install (owner daemon as the owner user + root helper, two systemd units) and the
 * helper's foreground process. The work runs in this process through operations
 * `main.ts` injects as `env.local.system` ({@linkcode SystemLocalOps}).
 *
 * @module
 */

import { type CommandDef, Flags, UsageError } from "./command_line.ts";
import { type CliEnv, CliError } from "./env.ts";
import { confirm, renderFields } from "./output.ts";

/** What an install wrote. */
export interface SystemInstallSummary {
  ownerUser: string;
  ownerUid: number;
  installRecord: string;
  units: string[];
  systemctl: boolean;
}

/** What `system status` shows. */
export interface SystemStatusView {
  installed: boolean;
  ownerUser?: string;
  ownerUid?: number;
  version?: string;
  installedAt?: string;
  units: string[];
  active: Record<string, string>;
}

/** The in-process system operations `main.ts` provides. `root` undefined: the default. */
export interface SystemLocalOps {
  /** Runs the root helper in the foreground; returns the exit code. */
  runHelper(root: string | undefined): Promise<number>;
  /** Installs for `owner`. */
  install(o: {
    root?: string;
    owner: string;
    bin?: string;
    helperBin?: string;
  }): Promise<SystemInstallSummary>;
  status(root: string | undefined): Promise<SystemStatusView>;
  restart(root: string | undefined): Promise<void>;
  uninstall(root: string | undefined, purge: boolean): Promise<string[]>;
}

/** The system operations from `env.local`, or a clear error when this build lacks them. */
function system(env: CliEnv): SystemLocalOps {
  const ops = (env.local as { system?: SystemLocalOps }).system;
  if (!ops) throw new CliError("Cannot manage the system install from this build of banger");
  return ops;
}

const rootFlag = {
  name: "root",
  kind: "string" as const,
  help: "Install root (tests): every system path is put under it; systemctl is skipped",
  placeholder: "DIR",
  hidden: true,
};

/** `banger helper`. */
export const helperCommand: CommandDef<CliEnv> = {
  name: "helper",
  summary: "Run the root helper in the foreground (systemd starts it)",
  description: "The root helper performs the privileged host work (bridge, taps, NAT, " +
    "loop/dm, jailer) for the owner daemon of a system install. It must run as root.",
  flags: [rootFlag],
  run: async (inv, env) => await system(env).runHelper(new Flags(inv).string("root")),
};

/** `banger system`. */
export const systemCommand: CommandDef<CliEnv> = {
  name: "system",
  summary: "Install banger system-wide: owner daemon + root helper under systemd",
  examples: ["sudo banger system install --owner $USER", "banger system status"],
  subcommands: [
    {
      name: "install",
      summary: "Install the units, directories and install record (needs root)",
      flags: [
        { name: "owner", kind: "string", help: "The user VMs belong to", placeholder: "USER" },
        rootFlag,
        { name: "bin", kind: "string", help: "banger binary for the daemon unit", hidden: true },
        { name: "helper-bin", kind: "string", help: "helper binary", hidden: true },
      ],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const owner = f.string("owner");
        if (!owner) throw new UsageError("system install needs --owner USER", inv.path);
        const r = await system(env).install({
          root: f.string("root"),
          owner,
          bin: f.string("bin"),
          helperBin: f.string("helper-bin"),
        });
        env.out(`Installed banger for ${r.ownerUser} (uid ${r.ownerUid})\n`);
        env.out(`  install record: ${r.installRecord}\n  units: ${r.units.join(", ")}\n`);
        if (!r.systemctl) env.out("  (not under /: systemctl was not run)\n");
        return 0;
      },
    },
    {
      name: "status",
      summary: "Show the install record and the units' state",
      flags: [{ name: "json", kind: "bool", help: "Print JSON" }, rootFlag],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const st = await system(env).status(f.string("root"));
        if (f.bool("json")) {
          env.out(JSON.stringify(st, null, 2) + "\n");
          return st.installed ? 0 : 1;
        }
        if (!st.installed) {
          env.out(
            "banger is not installed system-wide (sudo banger system install --owner $USER)\n",
          );
          return 1;
        }
        env.out(renderFields([
          ["owner", `${st.ownerUser} (uid ${st.ownerUid})`],
          ["version", st.version ?? ""],
          ["installed", st.installedAt ?? ""],
          ...st.units.map((u): [string, string] => [u, st.active[u] ?? "installed"]),
        ]));
        return 0;
      },
    },
    {
      name: "restart",
      summary: "Restart the helper, then the owner daemon; running VMs keep running",
      flags: [rootFlag],
      run: async (inv, env) => {
        await system(env).restart(new Flags(inv).string("root"));
        env.out("Restarted banger-helper.service and banger.service\n");
        return 0;
      },
    },
    {
      name: "uninstall",
      summary: "Remove the units and install record (needs root)",
      flags: [
        { name: "purge", kind: "bool", help: "Also delete config, state, cache and runtime dirs" },
        { name: "force", short: "f", kind: "bool", help: "Do not ask before --purge" },
        rootFlag,
      ],
      run: async (inv, env) => {
        const f = new Flags(inv);
        if (f.bool("purge")) {
          await confirm(
            env,
            "--purge deletes banger's config, state (every VM, image and kernel), cache and runtime directories.",
            f.bool("force"),
          );
        }
        const removed = await system(env).uninstall(f.string("root"), f.bool("purge"));
        for (const p of removed) env.out(`removed ${p}\n`);
        return 0;
      },
    },
  ],
};
