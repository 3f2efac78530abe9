/**
 * What runs inside guests, on the CLI side: `vm workspace prepare|export`, `vm exec`,
 * `vm ports`, and the workspace half of `vm run PATH` (flags, dry run, prepare after
 * create). Paths are resolved against the CLI's working directory before they reach the
 * daemon.
 *
 * @module
 */

import { userPath } from "./_paths.ts";
import {
  type PrepareResult,
  vmPorts,
  vmWorkspaceExport,
  vmWorkspacePrepare,
} from "../daemon/api/workspace.ts";
import type { VmView } from "../daemon/api/vm.ts";
import type { RequestOf } from "../daemon/api/protocol.ts";
import { formatSize } from "../daemon/api/size.ts";
import {
  type CommandDef,
  type FlagDef,
  Flags,
  type Invocation,
  UsageError,
} from "./command_line.ts";
import { callWithProgress, printJson } from "./call.ts";
import { callDaemon } from "./client/daemon_control.ts";
import { type CliEnv, ExitCode } from "./env.ts";
import { problem, renderTable } from "./output.ts";
import { envFlag, execIn, withGuestEnv } from "./guest/session.ts";

const json: FlagDef = { name: "json", kind: "bool", help: "Print JSON" };
const guestPathFlag: FlagDef = {
  name: "guest-path",
  kind: "string",
  placeholder: "PATH",
  help: "Workspace path in the guest (default /root/repo)",
};

/** The flags `vm workspace prepare` and `vm run PATH` share. */
export const workspaceFlags: FlagDef[] = [
  {
    name: "include-untracked",
    kind: "bool",
    help: "Also send untracked files that .gitignore does not exclude (they may hold secrets)",
  },
  { name: "dry-run", kind: "bool", help: "List the files that would be sent; change nothing" },
  { name: "readonly", kind: "bool", help: "Drop write bits on the copied files in the guest" },
  {
    name: "mode",
    kind: "string",
    placeholder: "MODE",
    complete: ["overlay", "full_copy"],
    help: "overlay (git history, the default) or full_copy (plain copy; allows submodules)",
  },
  { name: "branch", kind: "string", placeholder: "NAME", help: "Branch name in the guest" },
  {
    name: "from",
    kind: "string",
    placeholder: "REV",
    help: "Send this commit's tree instead of the working tree",
  },
  guestPathFlag,
];

/** A `vm.workspace.prepare` request. */
export type PrepareRequest = RequestOf<typeof vmWorkspacePrepare>;

/** The prepare request the workspace flags and `path` describe. */
export function prepareRequest(inv: Invocation, path: string, ref?: string): PrepareRequest {
  const f = new Flags(inv);
  const mode = f.string("mode");
  if (mode !== undefined && mode !== "overlay" && mode !== "full_copy") {
    throw new UsageError(`Flag "--mode" must be overlay or full_copy, got "${mode}"`, inv.path);
  }
  return {
    ref,
    path: userPath(path),
    include_untracked: f.bool("include-untracked") || undefined,
    dry_run: f.bool("dry-run") || undefined,
    readonly: f.bool("readonly") || undefined,
    mode: mode as "overlay" | "full_copy" | undefined,
    branch: f.string("branch"),
    from: f.string("from"),
    guest_path: f.string("guest-path"),
  };
}

/** Prints a dry run: the files on stdout, one per line, and a summary on stderr. */
export function printDryRun(env: CliEnv, r: PrepareResult): void {
  for (const file of r.files ?? []) env.out(`${file}\n`);
  env.err(
    `dry run: would send ${r.file_count} files (${formatSize(r.bytes)}) from ${r.host_path} to ${
      r.vm ?? "the VM"
    }:${r.guest_path} (${r.mode}${r.include_untracked ? ", with untracked files" : ""})\n`,
  );
}

function printPrepared(env: CliEnv, r: PrepareResult): void {
  env.err(
    `prepared ${r.vm}:${r.guest_path} from ${r.host_path} @ ${
      (r.base_commit ?? "").slice(0, 12)
    } (${r.file_count} files, ${formatSize(r.bytes)}, branch ${r.branch}${
      r.readonly ? ", read-only" : ""
    })\n`,
  );
}

/**
 * What `vm run PATH` does: check the repository before anything is created (a dry run
 * in the daemon), then, after the VM boots, prepare the workspace.
 *
 * @returns `undefined` for `--dry-run` (already printed: nothing to create), else the
 *   step to run after create.
 */
export async function prepareForRun(
  env: CliEnv,
  inv: Invocation,
  path: string,
): Promise<((vm: VmView) => Promise<void>) | undefined> {
  const req = prepareRequest(inv, path);
  const check = await callDaemon(env, vmWorkspacePrepare, { ...req, dry_run: true });
  if (req.dry_run) {
    printDryRun(env, check);
    return undefined;
  }
  return async (vm) => {
    printPrepared(env, await callWithProgress(env, vmWorkspacePrepare, { ...req, ref: vm.name }));
  };
}

/** `vm workspace …`. */
export const workspaceCommand: CommandDef<CliEnv> = {
  name: "workspace",
  summary: "Copy a git repository into a VM and bring the changes back",
  subcommands: [
    {
      name: "prepare",
      summary: "Copy a git repository into a running VM",
      description: "Sends the repository's tracked files (plus untracked, not-ignored files with " +
        "--include-untracked; ignored files never) and its history, so `export` can later " +
        "return exactly what changed in the guest.",
      args: [{ name: "vm", complete: "vm" }, { name: "path", complete: "dir" }],
      flags: [...workspaceFlags, json],
      examples: [
        "banger vm workspace prepare dev .",
        "banger vm workspace prepare dev . --dry-run",
        "banger vm workspace prepare dev ~/src/app --include-untracked --branch experiment",
      ],
      run: async (inv, env) => {
        const req = prepareRequest(inv, inv.args[1], inv.args[0]);
        const r = req.dry_run
          ? await callDaemon(env, vmWorkspacePrepare, req)
          : await callWithProgress(env, vmWorkspacePrepare, req);
        if (new Flags(inv).bool("json")) printJson(env, r);
        else if (r.dry_run) printDryRun(env, r);
        else printPrepared(env, r);
        return 0;
      },
    },
    {
      name: "export",
      summary: "Print the guest's changes as a patch for git apply",
      description: "A binary-safe patch of everything that changed in the guest workspace since " +
        "it was prepared: edits, commits made in the guest, new and deleted files.",
      args: [{ name: "vm", complete: "vm" }],
      flags: [
        {
          name: "base-commit",
          kind: "string",
          placeholder: "SHA",
          help: "Diff against this commit instead of the recorded base",
        },
        {
          name: "output",
          short: "o",
          kind: "string",
          placeholder: "FILE",
          complete: "file",
          help: "Write the patch to FILE instead of stdout",
        },
        guestPathFlag,
      ],
      examples: [
        "banger vm workspace export dev | git apply",
        "banger vm workspace export dev -o changes.patch",
      ],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const r = await callDaemon(env, vmWorkspaceExport, {
          ref: inv.args[0],
          base_commit: f.string("base-commit"),
          guest_path: f.string("guest-path"),
        });
        const patch = Uint8Array.from(atob(r.patch_base64), (c) => c.charCodeAt(0));
        const output = f.string("output");
        if (output === undefined && env.stdoutIsTty && isBinaryPatch(patch)) {
          throw new UsageError(
            "The patch holds binary changes, which would garble this terminal: " +
              "write it to a file with -o FILE (or redirect stdout)",
          );
        }
        if (output !== undefined) await Deno.writeFile(userPath(output), patch);
        else await writeAll(Deno.stdout, patch);
        if (!patch.length) env.err(`no changes since ${r.base_commit.slice(0, 12)}\n`);
        else if (output !== undefined) env.err(`wrote ${formatSize(patch.length)} to ${output}\n`);
        return 0;
      },
    },
  ],
};

/** `vm exec`. */
export const execCommand: CommandDef<CliEnv> = {
  name: "exec",
  summary: "Run a command in a VM's workspace; exit with its exit code",
  description: "Runs in the recorded workspace (else /root), with your stdin, stdout and stderr " +
    "(and a TTY when you have one). Warns when the host HEAD moved since the prepare.",
  args: [{ name: "vm", complete: "vm" }],
  rest: "cmd...",
  flags: [
    guestPathFlag,
    { name: "auto-prepare", kind: "bool", help: "Re-sync the workspace from the host first" },
    envFlag,
  ],
  examples: [
    "banger vm exec dev -- make test",
    "banger vm exec dev --auto-prepare -- npm test",
    "banger vm exec -e CI=1 dev -- npm test",
  ],
  run: async (inv, env) => {
    if (!inv.rest?.length) {
      throw new UsageError("Missing the command to run after --", inv.path);
    }
    const f = new Flags(inv);
    const command = withGuestEnv(inv.rest, f.list("env"), inv.path);
    const code = await execIn(env, inv.args[0], command, {
      guestPath: f.string("guest-path"),
      autoPrepare: f.bool("auto-prepare"),
    });
    if (code !== 0) throw new ExitCode(code);
    return 0;
  },
};

/** `vm ports`. */
export const portsCommand: CommandDef<CliEnv> = {
  name: "ports",
  summary: "Show what running VMs listen on, with HTTP links",
  args: [{ name: "vm", variadic: true, complete: "vm" }],
  flags: [json],
  examples: ["banger vm ports dev", "banger vm ports dev web --json"],
  run: async (inv, env) => {
    if (!inv.args.length) throw new UsageError("Name at least one VM", inv.path);
    const { results } = await callDaemon(env, vmPorts, { refs: inv.args });
    if (new Flags(inv).bool("json")) printJson(env, results);
    else {
      const rows = results.flatMap((r) =>
        (r.ports ?? []).map((p) => [
          r.vm ?? r.ref,
          p.local_only ? `${p.address}:${p.port} (guest only)` : p.endpoint,
          p.proto,
          p.processes.join(",") || "-",
          p.url ?? "",
        ])
      );
      if (rows.length) env.out(renderTable(["VM", "ENDPOINT", "PROTO", "PROCESS", "URL"], rows));
    }
    let failed = 0;
    for (const r of results.filter((r) => !r.ok)) {
      failed++;
      problem(env, "error", `${r.ref}: ${r.error?.message ?? "failed"}`);
      if (r.error?.hint) problem(env, "hint", r.error.hint);
    }
    return failed ? 1 : 0;
  },
};

async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await w.write(bytes.subarray(off));
}

/** Whether a patch carries binary hunks (git's base85 blocks, or raw NUL bytes). */
function isBinaryPatch(patch: Uint8Array): boolean {
  return patch.includes(0) || new TextDecoder().decode(patch).includes("\nGIT binary patch\n");
}
