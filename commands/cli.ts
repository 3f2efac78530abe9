/**
 * The root of the command tree and the one place that turns errors into exit codes:
 * usage errors exit 2 with a pointer to `--help`; daemon and CLI errors print one
 * `error:` line (with the op id when there is one) and exit 1; `--debug` adds the stack.
 *
 * @module
 */

import { BANGER_VERSION } from "../daemon/rpc_protocol.ts";
import { type CommandDef, loadGroups, parseArgv, renderHelp, UsageError } from "./_cli.ts";
import { complete, completionCommand } from "./completion_cmd.ts";
import { daemonCommand } from "./daemon_cmd.ts";
import { doctorCommand } from "./doctor_cmd.ts";
import { type CliEnv, CliError, ExitCode } from "./env.ts";
import { RpcError } from "./rpc_client.ts";

const versionCommand: CommandDef<CliEnv> = {
  name: "version",
  summary: "Print banger's version",
  flags: [{ name: "json", kind: "bool", help: "Print JSON" }],
  run: (inv, env) => {
    const info = {
      version: BANGER_VERSION,
      deno: Deno.version.deno,
      os: Deno.build.os,
      arch: Deno.build.arch,
    };
    env.out(
      inv.flags.has("json")
        ? JSON.stringify(info, null, 2) + "\n"
        : `banger ${info.version} (deno ${info.deno}, ${info.os}/${info.arch})\n`,
    );
    return Promise.resolve(0);
  },
};

/** The whole command tree. */
export const ROOT: CommandDef<CliEnv> = {
  name: "banger",
  summary: "One-command development sandboxes on Firecracker microVMs",
  description: "banger creates throwaway, fully isolated Linux VMs for development: " +
    "`banger vm run ./repo` boots a VM, copies the repo in and drops you into SSH.",
  examples: ["banger vm run ./repo -- make test", "banger doctor"],
  subcommands: [
    lazy(
      "vm",
      "Create, run and manage sandbox VMs",
      () => import("./vm_cmd.ts").then((m) => m.vmCommand),
    ),
    lazy(
      "image",
      "Pull and manage root filesystem images",
      () => import("./image_cmd.ts").then((m) => m.imageCommand),
    ),
    lazy(
      "kernel",
      "Pull and manage guest kernels",
      () => import("./image_cmd.ts").then((m) => m.kernelCommand),
    ),
    lazy(
      "ssh-config",
      "Use `ssh <name>.vm` from your own ssh",
      () => import("./ssh_config_cmd.ts").then((m) => m.sshConfigCommand),
    ),
    daemonCommand,
    doctorCommand,
    versionCommand,
    completionCommand,
  ],
};

function lazy(
  name: string,
  summary: string,
  load: () => Promise<CommandDef<CliEnv>>,
): CommandDef<CliEnv> {
  return { name, summary, load, subcommands: [] };
}

/**
 * Runs the CLI for `argv` and returns the process exit code.
 *
 * @example
 * ```ts
 * Deno.exit(await runCli(Deno.args, env));
 * ```
 */
export async function runCli(argv: readonly string[], env: CliEnv): Promise<number> {
  const debug = argv.includes("--debug");
  if (argv[0] === "--version") argv = ["version"];
  if (argv[0] === "__complete") {
    // Completion words may look like flags; never parse them as ours.
    const words = argv.slice(1);
    await loadGroups(ROOT, words, true);
    for (const c of await complete(ROOT, words, liveNames(env))) env.out(c + "\n");
    return 0;
  }
  try {
    await loadGroups(ROOT, argv, false);
    const { command, invocation, help } = parseArgv(ROOT, argv);
    if (help || !command.run) {
      env.out(renderHelp(command, invocation.path));
      return 0;
    }
    return (await command.run(invocation, env)) ?? 0;
  } catch (err) {
    return report(err, env, debug);
  }
}

/** VM, image and kernel names from a daemon that is already running (never starts one). */
function liveNames(env: CliEnv) {
  return async (kind: "vm" | "image" | "kernel"): Promise<string[]> => {
    const api = await import("../daemon/api/vm.ts");
    const img = await import("../daemon/api/image.ts");
    try {
      if (kind === "vm") return (await env.client.call(api.vmList, {})).vms.map((v) => v.name);
      if (kind === "image") {
        return (await env.client.call(img.imageList, {})).images.map((i) => i.name);
      }
      return (await env.client.call(img.kernelList, {})).kernels.map((k) => k.name);
    } catch {
      return [];
    }
  };
}

function report(err: unknown, env: CliEnv, debug: boolean): number {
  if (err instanceof ExitCode) return err.code;
  if (err instanceof UsageError) {
    env.err(`error: ${err.message}\n`);
    env.err(`Run "${["banger", ...err.helpPath, "--help"].join(" ")}" for usage.\n`);
    return 2;
  }
  if (err instanceof RpcError) {
    env.err(`error: ${err.message} (${err.opId})\n`);
    if (err.hint) env.err(`hint: ${err.hint}\n`);
  } else if (err instanceof CliError) {
    env.err(`error: ${err.message}\n`);
    if (err.hint) env.err(`hint: ${err.hint}\n`);
  } else {
    env.err(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  if (debug && err instanceof Error && err.stack) env.err(err.stack + "\n");
  return 1;
}
