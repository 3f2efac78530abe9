/**
 * The root of the command tree and the one place that turns errors into exit codes:
 * usage errors exit 2 with a pointer to `--help`; daemon and CLI errors print one
 * `error:` line (with the op id when there is one) and exit 1; `--debug` adds the stack.
 *
 * @module
 */

import { BANGER_VERSION } from "../daemon/api/protocol.ts";
import { type CommandDef, loadGroups, parseArgv, renderHelp, UsageError } from "./command_line.ts";
import type * as Completion from "./completion_cmd.ts";
import { importLazily } from "./_lazy.ts";
import type * as VmApi from "../daemon/api/vm.ts";
import type * as ImageApi from "../daemon/api/image.ts";
import { daemonCommand } from "./daemon_cmd.ts";
import { type CliEnv, CliError, ExitCode, FailedWith } from "./env.ts";
import { problem } from "./output.ts";
import { RpcError } from "./client/rpc_client.ts";

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
      () => group("./vm_cmd.ts", "vmCommand"),
    ),
    lazy(
      "image",
      "Pull and manage root filesystem images",
      () => group("./image_cmd.ts", "imageCommand"),
    ),
    lazy(
      "kernel",
      "Pull and manage guest kernels",
      () => group("./image_cmd.ts", "kernelCommand"),
    ),
    lazy(
      "ssh-config",
      "Use `ssh <name>.vm` from your own ssh",
      () => group("./ssh_config_cmd.ts", "sshConfigCommand"),
    ),
    lazy(
      "system",
      "Install banger system-wide: owner daemon + root helper under systemd",
      () => group("./system_cmd.ts", "systemCommand"),
    ),
    lazy(
      "helper",
      "Run the root helper in the foreground (systemd starts it)",
      () => group("./system_cmd.ts", "helperCommand"),
    ),
    daemonCommand,
    lazy(
      "config",
      "Show or check banger's configuration file",
      () => group("./config_cmd.ts", "configCommand"),
    ),
    lazy(
      "doctor",
      "Check that this host can run banger, with a fix for each problem",
      () => group("./doctor_cmd.ts", "doctorCommand"),
    ),
    versionCommand,
    {
      // `banger help vm run` is `banger vm run --help` (runCli rewrites it).
      name: "help",
      summary: "Show help for a command, e.g. banger help vm run",
      args: [{ name: "command", optional: true, variadic: true }],
    },
    lazy(
      "completion",
      "Print a shell completion script (bash, zsh or fish)",
      () => group("./completion_cmd.ts", "completionCommand"),
    ),
  ],
};

/** Loads the command group `name` exported by `module` (kept out of the startup graph). */
function group(module: string, name: string): Promise<CommandDef<CliEnv>> {
  return importLazily<Record<string, CommandDef<CliEnv>>>(new URL(module, import.meta.url)).then((
    m,
  ) => m[name]);
}

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
  if (argv[0] === "help") argv = [...argv.slice(1).filter((w) => !w.startsWith("-")), "--help"];
  if (argv[0] === "__complete") {
    // Completion words may look like flags; never parse them as ours.
    const words = argv.slice(1);
    await loadGroups(ROOT, words, true);
    const { complete } = await importLazily<typeof Completion>(
      new URL("./completion_cmd.ts", import.meta.url),
    );
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
    const api = await importLazily<typeof VmApi>(new URL("../daemon/api/vm.ts", import.meta.url));
    const img = await importLazily<typeof ImageApi>(
      new URL("../daemon/api/image.ts", import.meta.url),
    );
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
  if (err instanceof FailedWith) {
    report(err.error, env, debug);
    return err.code;
  }
  if (err instanceof UsageError) {
    problem(env, "error", err.message);
    env.err(`Run "${["banger", ...err.helpPath, "--help"].join(" ")}" for usage.\n`);
    return 2;
  }
  if (err instanceof RpcError) {
    problem(env, "error", `${err.message} (${err.opId})`);
    if (err.hint) problem(env, "hint", err.hint);
  } else if (err instanceof CliError) {
    problem(env, "error", err.message);
    if (err.hint) problem(env, "hint", err.hint);
  } else {
    problem(env, "error", err instanceof Error ? err.message : String(err));
  }
  if (debug && err instanceof Error && err.stack) env.err(err.stack + "\n");
  return 1;
}
