/**
 * The interactive end of VM commands: running `ssh` in the foreground (with the
 * terminal, or a command whose exit code becomes ours), and what `vm run` does around
 * it — create, then a shell or a command, then `--rm`.
 *
 * @module
 */

import { vmCreate, vmDelete, vmSsh, type VmView } from "../../daemon/api/vm.ts";
import { vmExec, vmHealth } from "../../daemon/api/workspace.ts";
import { formatSizeShort } from "../../daemon/api/size.ts";
import { callWithProgress } from "../call.ts";
import { type FlagDef, UsageError } from "../command_line.ts";
import { callDaemon } from "../client/daemon_control.ts";
import { type CliEnv, CliError, EXIT_INTERRUPTED, ExitCode } from "../env.ts";
import { formatDuration, problem } from "../output.ts";

/**
 * Runs `ssh` with our stdio and returns its exit code (the remote command's, or 255 when
 * ssh itself failed).
 */
export async function runSsh(argv: readonly string[]): Promise<number> {
  const [program, ...args] = argv;
  try {
    const child = new Deno.Command(program, {
      args,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    })
      .spawn();
    return (await child.status).code;
  } catch (err) {
    throw new CliError(`Cannot run ${program}: ${err instanceof Error ? err.message : err}`, {
      hint: "install openssh-client",
    });
  }
}

/** `-e KEY=VALUE` of `vm run` and `vm exec`. */
export const envFlag: FlagDef = {
  name: "env",
  short: "e",
  kind: "list",
  placeholder: "KEY=VALUE",
  help: "Set a variable for the command or shell in the guest; repeatable",
};

/**
 * `command` run with the `-e` variables set, through the guest's `env` (each pair stays
 * one argv word, so nothing is re-quoted); with no command, a login shell. Pure.
 *
 * @example
 * ```ts
 * withGuestEnv(["make"], ["CI=1"], ["vm", "exec"]); // ["env", "--", "CI=1", "make"]
 * ```
 * @throws {UsageError} for a pair that is not `KEY=VALUE` with a shell variable's name.
 */
export function withGuestEnv(
  command: string[] | undefined,
  pairs: readonly string[],
  helpPath: string[],
): string[] | undefined {
  if (!pairs.length) return command;
  for (const pair of pairs) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(pair)) {
      throw new UsageError(`Flag "--env" needs KEY=VALUE, got "${pair}"`, helpPath);
    }
  }
  return ["env", "--", ...pairs, ...(command ?? ["sh", "-c", 'exec "${SHELL:-/bin/sh}" -l'])];
}

/** Opens a shell (no command) or runs `command` in a running VM; returns the exit code. */
export async function sshInto(
  env: CliEnv,
  ref: string,
  command: string[] | undefined,
): Promise<number> {
  const tty = command === undefined
    ? Deno.stdin.isTerminal()
    : Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
  const inv = await callDaemon(env, vmSsh, { ref, command, tty });
  for (const w of inv.warnings) problem(env, "warning", w);
  return await runSsh(trustedSshArgv(inv.argv, socketOwner(env), Deno.uid()));
}

/** The uid that owns the daemon's socket: the uid the daemon runs as. */
function socketOwner(env: CliEnv): number | null {
  return Deno.statSync(env.paths.socket).uid;
}

/**
 * The daemon's ssh command line, if this CLI may run it: the program is `ssh`, and the
 * daemon runs as the CLI's own uid. A daemon of another uid (a system install's owner,
 * answering `sudo banger vm ssh`) must never choose what this uid executes. Pure.
 *
 * @throws {CliError} naming both uids and how to run it instead.
 */
export function trustedSshArgv(
  argv: readonly string[],
  daemonUid: number | null,
  myUid: number | null,
): string[] {
  if (argv[0] !== "ssh") {
    throw new CliError(`Cannot run the daemon's command "${argv[0]}": only ssh is run for a VM`);
  }
  if (daemonUid !== myUid) {
    throw new CliError(
      `Cannot run ssh for this VM as uid ${myUid}: its command line comes from the daemon of ` +
        `uid ${daemonUid}, which must not choose what uid ${myUid} runs; run banger as that user ` +
        `(sudo -u '#${daemonUid}' banger …)`,
    );
  }
  return [...argv];
}

/**
 * Runs `command` (or, without one, a login shell) in the VM's workspace — the recorded
 * one, `guestPath`, else `/root` — with our stdio; returns the exit code.
 */
export async function execIn(
  env: CliEnv,
  ref: string,
  command: string[] | undefined,
  o: { guestPath?: string; autoPrepare?: boolean } = {},
): Promise<number> {
  const tty = command === undefined
    ? Deno.stdin.isTerminal()
    : Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
  const req = {
    ref,
    command,
    tty,
    guest_path: o.guestPath,
    auto_prepare: o.autoPrepare || undefined,
  };
  const inv = o.autoPrepare
    ? await callWithProgress(env, vmExec, req)
    : await callDaemon(env, vmExec, req);
  for (const w of inv.warnings) problem(env, "warning", w);
  return await runSsh(trustedSshArgv(inv.argv, socketOwner(env), Deno.uid()));
}

/** `dev is still running (up 3m05s; banger vm stop dev)`, with the guest's uptime when its agent answers. */
export async function stillRunningNote(env: CliEnv, name: string): Promise<string> {
  const health = await callDaemon(env, vmHealth, { ref: name }).catch(() => undefined);
  const up = health?.uptime_seconds !== undefined
    ? `up ${formatDuration(health.uptime_seconds * 1000)}; `
    : "";
  return `${name} is still running (${up}banger vm stop ${name})\n`;
}

/** Options of `vm run`/`vm create` that shape the VM. */
export interface CreateFlags {
  name?: string;
  image?: string;
  vcpu?: number;
  memory_mib?: number;
  disk_size?: string;
  system_overlay_size?: string;
  nat?: boolean;
  no_start?: boolean;
  /** `vm run --rm`: a boot that fails or is cancelled leaves no VM behind. */
  remove_on_failure?: boolean;
}

/** Creates a VM, showing its spec line and stages. */
export async function createVm(
  env: CliEnv,
  flags: CreateFlags,
  signal?: AbortSignal,
): Promise<VmView> {
  const vm = await callWithProgress(env, vmCreate, flags, { signal });
  env.err(specLine(vm));
  return vm;
}

/** `spec: 2 vcpu · 1024 MiB · 8G disk · qemu · 172.16.0.2`. */
export function specLine(vm: VmView): string {
  return `spec: ${vm.name} · ${vm.vcpu} vcpu · ${vm.memory_mib} MiB · ${
    formatSizeShort(vm.disk_bytes)
  } disk · ${vm.vmm} · ${vm.guest_ip}\n`;
}

/** `vm run`: create, then shell or command, then `--rm`. */
export async function vmRun(
  env: CliEnv,
  o: {
    create: CreateFlags;
    command?: string[];
    rm: boolean;
    detach: boolean;
    afterCreate?: (vm: VmView) => Promise<void>;
    /** Run the command or shell in the prepared workspace (`vm exec`) instead of /root. */
    inWorkspace?: boolean;
  },
): Promise<number> {
  // With --rm, ^C must not leave the VM behind: the CLI stays alive to delete it (the
  // foreground ssh gets the same SIGINT from the terminal and ends on its own). During
  // the create, ^C cancels it: the daemon rolls the start back.
  const creating = new AbortController();
  let interrupted = false;
  const onInterrupt = () => {
    interrupted = true;
    env.err("\ninterrupted\n");
    creating.abort(new CliError("Cancelled"));
  };
  if (o.rm) Deno.addSignalListener("SIGINT", onInterrupt);
  try {
    const code = await runInVm(env, o, creating.signal);
    return interrupted ? EXIT_INTERRUPTED : code;
  } catch (err) {
    if (interrupted) throw new ExitCode(EXIT_INTERRUPTED);
    throw err;
  } finally {
    if (o.rm) Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

async function runInVm(
  env: CliEnv,
  o: Parameters<typeof vmRun>[1],
  createSignal: AbortSignal,
): Promise<number> {
  const vm = await createVm(
    env,
    { ...o.create, remove_on_failure: o.rm || undefined },
    createSignal,
  );
  let code = 0;
  let ready = false;
  try {
    if (o.afterCreate) await o.afterCreate(vm);
    ready = true;
    if (o.detach) {
      env.out(`${vm.name} is running: banger vm ssh ${vm.name}\n`);
      return 0;
    }
    code = o.inWorkspace
      ? await execIn(env, vm.name, o.command)
      : await sshInto(env, vm.name, o.command);
  } finally {
    if (o.rm) {
      const warn = (why: unknown) =>
        problem(
          env,
          "warning",
          `could not delete ${vm.name}: ${why instanceof Error ? why.message : why}`,
        );
      const r = await callDaemon(env, vmDelete, { refs: [vm.name], force: true }).catch((err) => {
        warn(err);
        return undefined;
      });
      const failed = r?.results.find((x) => !x.ok);
      if (failed) warn(failed.error?.message);
      else if (r) env.err(`deleted ${vm.name}\n`);
    } else if (ready && o.command === undefined) {
      env.err(await stillRunningNote(env, vm.name));
    }
  }
  if (code !== 0) throw new ExitCode(code);
  return 0;
}
