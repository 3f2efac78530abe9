/**
 * The interactive end of VM commands: running `ssh` in the foreground (with the
 * terminal, or a command whose exit code becomes ours), and what `vm run` does around
 * it — create, then a shell or a command, then `--rm`.
 *
 * @module
 */

import { vmCreate, vmDelete, vmSsh, type VmView } from "../daemon/api/vm.ts";
import { formatSizeShort } from "../daemon/size.ts";
import { callWithProgress } from "./_call.ts";
import { callDaemon } from "./daemon_control.ts";
import { type CliEnv, CliError, ExitCode } from "./env.ts";

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
  for (const w of inv.warnings) env.err(`warning: ${w}\n`);
  return await runSsh(inv.argv);
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
  },
): Promise<number> {
  const vm = await createVm(env, o.create);
  let code = 0;
  let ready = false;
  try {
    if (o.afterCreate) await o.afterCreate(vm);
    ready = true;
    if (o.detach) {
      env.out(`${vm.name} is running: banger vm ssh ${vm.name}\n`);
      return 0;
    }
    code = await sshInto(env, vm.name, o.command);
  } finally {
    if (o.rm) {
      const r = await callDaemon(env, vmDelete, { refs: [vm.name] }).catch((err) => {
        env.err(
          `warning: could not delete ${vm.name}: ${err instanceof Error ? err.message : err}\n`,
        );
        return undefined;
      });
      if (r?.results.every((x) => x.ok)) env.err(`deleted ${vm.name}\n`);
    } else if (ready && o.command === undefined) {
      env.err(`${vm.name} is still running (banger vm stop ${vm.name})\n`);
    }
  }
  if (code !== 0) throw new ExitCode(code);
  return 0;
}
