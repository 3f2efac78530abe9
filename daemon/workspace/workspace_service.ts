/**
 * Workspaces: a host git repository copied into a running VM (`prepare`), the guest's
 * changes brought back as a patch (`export`), and commands run inside it (`exec`).
 *
 * Locks (DESIGN.md invariant 5): the VM lock is held only to validate the VM and
 * snapshot its fields; the guest I/O runs under this service's per-VM workspace lock,
 * so a slow prepare never blocks `vm stop`, and two prepares or exports on one VM never
 * interleave.
 *
 * Allowed VM statuses: prepare (except dry runs), export and exec need `running`.
 *
 * @module
 */

import type { VmRecord, WorkspaceRecord } from "../../store/vms.ts";
import { getVm } from "../../store/vms.ts";
import { GitRepo } from "../../host/git/git.ts";
import { errorMessage } from "../../host/errors.ts";
import { GUEST_BASE_REF } from "./_scripts.ts";
import { type GuestShell, SshGuestShell } from "./_shell.ts";
import {
  exportWorkspace,
  importWorkspace,
  type PlanRequest,
  planWorkspace,
  WorkspaceError,
  type WorkspacePlan,
} from "./_sync.ts";
import type { PrepareResult } from "../api/workspace.ts";
import { KeyedLock } from "../locks.ts";
import type { OpContext } from "../rpc/server.ts";
import type { VmDeps } from "../vm/deps.ts";
import { sshInvocation } from "../vm/inspect.ts";
import { assertStatus, type VmService } from "../vm/vm_service.ts";
import { guestRef } from "../vm/stop.ts";

export { WorkspaceError } from "./_sync.ts";

/** What the service needs. */
export interface WorkspaceDeps {
  vms: VmService;
  vmDeps: VmDeps;
  /** The guest I/O seam. @default SSH through the VM's master connection */
  shell?: (vm: VmRecord) => GuestShell;
}

/** A prepare request: a plan, the VM (optional for dry runs) and `dryRun`. */
export interface PrepareRequest extends PlanRequest {
  ref?: string;
  dryRun?: boolean;
}

/** An export request. */
export interface ExportRequest {
  ref: string;
  baseCommit?: string;
  guestPath?: string;
}

/** What an export produced. */
export interface ExportResult {
  patch: Uint8Array;
  baseCommit: string;
  guestPath: string;
}

/** An exec request. */
export interface ExecRequest {
  ref: string;
  /** Without a command: a login shell in the workspace. */
  command?: string[];
  guestPath?: string;
  autoPrepare?: boolean;
  tty?: boolean;
}

/** The ssh command line for an exec. */
export interface ExecResult {
  argv: string[];
  vm: VmRecord;
  warnings: string[];
  guestPath: string;
}

/** A recorded workspace plus what `--auto-prepare` needs to repeat the prepare. */
interface RecordedWorkspace extends WorkspaceRecord {
  includeUntracked?: boolean;
}

/** Where `vm exec` runs without a workspace. */
const HOME = "/root";
const EXEC_SCRIPT = `cd "$1" || exit; shift; exec "$@"`;
const SHELL_SCRIPT = `cd "$1" || exit; exec "\${SHELL:-/bin/sh}" -l`;

/** Prepares, exports and runs commands in workspaces. */
export class WorkspaceService {
  // workspace[id]: held for the guest I/O of one prepare or export on VM id. Taken
  // WITHOUT vm[id] held (DESIGN.md invariant 5, daemon/locks.ts order); a prepare takes
  // vm[id] briefly while holding it, to record the result — never the reverse, so no cycle.
  readonly workspaceLocks = new KeyedLock("workspace");
  readonly #vms: VmService;
  readonly #vmDeps: VmDeps;
  readonly #shell: (vm: VmRecord) => GuestShell;

  constructor(deps: WorkspaceDeps) {
    this.#vms = deps.vms;
    this.#vmDeps = deps.vmDeps;
    this.#shell = deps.shell ?? ((vm) => new SshGuestShell(deps.vmDeps.guest, guestRef(vm)));
  }

  /**
   * Copies the repository into a running VM and records the workspace; with `dryRun`,
   * only lists what would be sent (the VM, if named, must exist; nothing is created).
   *
   * @throws {VmStateError} unless the VM is running.
   * @throws {GitError} for a path that is no usable repository.
   * @throws {WorkspaceError} for submodules outside full_copy, bad options, or a failed
   *   guest step.
   */
  async prepare(req: PrepareRequest, ctx: OpContext): Promise<PrepareResult> {
    if (req.dryRun) {
      const name = req.ref !== undefined ? this.#vms.find(req.ref).name : undefined;
      const plan = await planWorkspace(req, ctx.signal);
      return prepareView(plan, { dry_run: true, files: plan.files, ...(name ? { vm: name } : {}) });
    }
    if (!req.ref) {
      throw new WorkspaceError("Cannot prepare a workspace: no VM was given", {
        code: "invalid_argument",
      });
    }
    const vm = await this.#vms.withVm(req.ref, ctx.signal, (vm) => {
      assertStatus(vm, ["running"], "prepare a workspace in");
      return vm;
    });
    ctx.progress("workspace_plan", `Listing the files of ${req.hostPath}`);
    const plan = await planWorkspace(req, ctx.signal);
    if (this.workspaceLocks.isLocked(vm.id)) {
      ctx.progress("workspace_wait", `Waiting for another workspace operation on ${vm.name}`);
    }
    using _ws = await this.workspaceLocks.acquire(vm.id, ctx.signal);
    const current = getVm(this.#vmDeps.store, vm.id)?.workspace;
    const oldBase = current?.guestPath === plan.guestPath ? current.baseCommit : "";
    const base = await importWorkspace(this.#shell(vm), plan, {
      oldBase,
      signal: ctx.signal,
      progress: ctx.progress,
    });
    const record: RecordedWorkspace = {
      guestPath: plan.guestPath,
      hostPath: plan.repo.root,
      baseCommit: base,
      hostHead: plan.hostHead ?? "",
      mode: plan.mode,
      readonly: plan.readonly,
      branch: plan.branch,
      preparedAt: new Date().toISOString(),
      includeUntracked: plan.includeUntracked,
    };
    // Recorded even if the client went away meanwhile: the guest already holds it.
    await this.#vms.recordWorkspace(vm.id, record);
    ctx.log.info("workspace prepared", {
      vm: vm.name,
      host_path: plan.repo.root,
      guest_path: plan.guestPath,
      files: plan.files.length,
      bytes: plan.bytes,
      base,
    });
    return prepareView(plan, { dry_run: false, vm: vm.name, base_commit: base });
  }

  /**
   * The guest's changes since the base commit (recorded, or `baseCommit`), as a binary
   * patch for `git apply` on the host. The guest's index is never written.
   *
   * @throws {VmStateError} unless the VM is running.
   * @throws {WorkspaceError} when no workspace is known or the guest step fails.
   */
  async export(req: ExportRequest, ctx: OpContext): Promise<ExportResult> {
    const vm = await this.#vms.withVm(req.ref, ctx.signal, (vm) => {
      assertStatus(vm, ["running"], "export the workspace of");
      return vm;
    });
    const ws = vm.workspace;
    const guestPath = req.guestPath ?? ws?.guestPath;
    if (!guestPath) {
      throw new WorkspaceError(`Cannot export from "${vm.name}": no workspace is recorded`, {
        code: "failed_precondition",
        hint: `banger vm workspace prepare ${vm.name} <path>, or pass --guest-path`,
      });
    }
    const recordedBase = ws?.guestPath === guestPath ? ws.baseCommit : undefined;
    const baseCommit = req.baseCommit ?? recordedBase ?? GUEST_BASE_REF;
    using _ws = await this.workspaceLocks.acquire(vm.id, ctx.signal);
    const patch = await exportWorkspace(this.#shell(vm), guestPath, baseCommit, ctx.signal);
    ctx.log.info("workspace exported", { vm: vm.name, base: baseCommit, bytes: patch.length });
    return { patch, baseCommit, guestPath };
  }

  /**
   * The ssh command line running `command` (or a login shell) in the workspace; with
   * `autoPrepare`, re-syncs the recorded workspace first. Warns when the host HEAD moved
   * since the prepare.
   *
   * @throws {VmStateError} unless the VM is running.
   */
  async exec(req: ExecRequest, ctx: OpContext): Promise<ExecResult> {
    let vm = await this.#vms.withVm(req.ref, ctx.signal, (vm) => {
      assertStatus(vm, ["running"], "run a command in");
      return vm;
    });
    const warnings: string[] = [];
    const ws = vm.workspace as RecordedWorkspace | undefined;
    if (req.autoPrepare && ws) {
      await this.prepare({
        ref: vm.id,
        hostPath: ws.hostPath,
        mode: ws.mode,
        readonly: ws.readonly,
        branch: ws.branch,
        guestPath: ws.guestPath,
        includeUntracked: ws.includeUntracked,
      }, ctx);
      vm = getVm(this.#vmDeps.store, vm.id) ?? vm;
    } else if (req.autoPrepare) {
      warnings.push(`nothing to re-sync: ${vm.name} has no recorded workspace`);
    } else if (ws) {
      const moved = await headMoved(ws, vm.name, ctx.signal);
      if (moved) warnings.push(moved);
    }
    const guestPath = req.guestPath ?? vm.workspace?.guestPath ?? HOME;
    const command = req.command?.length
      ? ["sh", "-c", EXEC_SCRIPT, "banger-exec", guestPath, ...req.command]
      : ["sh", "-c", SHELL_SCRIPT, "banger-shell", guestPath];
    const argv = sshInvocation(vm, this.#vmDeps, { command, tty: req.tty });
    return { argv, vm, warnings, guestPath };
  }
}

/** A warning when the host repository's HEAD is no longer the one prepared. */
async function headMoved(
  ws: WorkspaceRecord,
  name: string,
  signal: AbortSignal,
): Promise<string | undefined> {
  let now: string | undefined;
  try {
    now = await (await GitRepo.open(ws.hostPath, signal)).head(signal);
  } catch (err) {
    return `cannot read the host repository "${ws.hostPath}": ${errorMessage(err)}`;
  }
  if ((now ?? "") === ws.hostHead) return undefined;
  const short = (c: string) => c ? c.slice(0, 12) : "(no commit)";
  return `the host HEAD of ${ws.hostPath} moved from ${short(ws.hostHead)} to ${
    short(now ?? "")
  } since the workspace was prepared; re-sync with: banger vm exec ${name} --auto-prepare -- …`;
}

function prepareView(plan: WorkspacePlan, extra: Partial<PrepareResult>): PrepareResult {
  return {
    dry_run: false,
    host_path: plan.repo.root,
    guest_path: plan.guestPath,
    mode: plan.mode,
    branch: plan.branch,
    readonly: plan.readonly,
    include_untracked: plan.includeUntracked,
    file_count: plan.files.length,
    bytes: plan.bytes,
    ...(plan.hostHead ? { host_head: plan.hostHead } : {}),
    ...extra,
  };
}
