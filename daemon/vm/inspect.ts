/**
 * Looking at VMs without changing them: views that never throw for a broken VM (they say
 * `broken` and why), the serial console, stats, and the SSH command line for `vm ssh`.
 *
 * @module
 */

import { readFrom, readTail } from "../../host/os/log_file.ts";
import { vmFiles } from "../../host/layout.ts";
import { sshArgs } from "../../host/ssh/ssh.ts";
import { getImageById } from "../../store/images.ts";
import type { VmRecord } from "../../store/vms.ts";
import type { VmStatsView, VmView } from "../api/vm.ts";
import type { HealthView } from "../api/workspace.ts";
import { errorMessage } from "../../host/errors.ts";
import type { VmDeps } from "./deps.ts";
import { assertStatus } from "./vm_service.ts";
import { guestRef } from "./stop.ts";
import { vmView } from "./views.ts";

/** The most of the console one `vm logs` answer carries. */
const LOG_CHUNK_BYTES = 1 << 20;

/** The view of `vm`, with `errors` for whatever is inconsistent (status `broken`). */
export async function inspectVm(vm: VmRecord, deps: VmDeps): Promise<VmView> {
  const errors: string[] = [];
  const image = getImageById(deps.store, vm.imageId);
  if (!image) errors.push(`image ${vm.imageId} is missing`);
  if (vm.status === "running") {
    const h = await deps.handles.read(vm);
    if (h.pid === undefined) errors.push("running, but no VMM pid is recorded");
    else if (!(await deps.driver(vm.spec.vmm).alive(h.pid, vm.runtime.vmDir).catch(() => false))) {
      errors.push(`running, but its VMM (pid ${h.pid}) is gone`);
    }
  }
  return vmView(vm, image?.name ?? "(missing)", errors);
}

/** The serial console: the last `lines` lines, or everything from byte `offset`. */
export async function readLogs(
  vm: VmRecord,
  req: { lines?: number; offset?: number },
): Promise<{ text: string; offset: number; running: boolean }> {
  const path = `${vm.runtime.vmDir}/${vmFiles.serialLog}`;
  const running = vm.status === "running" || vm.status === "starting";
  if (req.offset !== undefined) {
    // A follower asks again from the returned offset: never more than a chunk at once.
    const { bytes, offset } = await readFrom(path, req.offset, LOG_CHUNK_BYTES);
    return { text: new TextDecoder().decode(bytes), offset, running };
  }
  const { bytes, size } = await readTail(path, LOG_CHUNK_BYTES);
  const text = new TextDecoder().decode(bytes);
  const all = text.split("\n");
  const n = req.lines ?? 200;
  const tail = all.slice(Math.max(0, all.length - n - (text.endsWith("\n") ? 1 : 0))).join("\n");
  return { text: tail, offset: size, running };
}

/** Process and VMM figures. */
export async function vmStats(vm: VmRecord, deps: VmDeps): Promise<VmStatsView> {
  const h = await deps.handles.read(vm);
  const base = { name: vm.name, status: vm.status, vmm: vm.spec.vmm };
  if (vm.status !== "running" || h.pid === undefined) return base;
  const s = await deps.driver(vm.spec.vmm).stats(h.pid, vm.runtime.vmDir);
  return {
    ...base,
    pid: h.pid,
    ...(s.cpuSeconds !== undefined ? { cpu_seconds: s.cpuSeconds } : {}),
    ...(s.rssBytes !== undefined ? { rss_bytes: s.rssBytes } : {}),
    ...(vm.runtime.startedAt ? { uptime_ms: Date.now() - Date.parse(vm.runtime.startedAt) } : {}),
    ...(s.metrics !== undefined ? { metrics: s.metrics } : {}),
  };
}

/**
 * The `ssh` command line for a running VM, reusing the daemon's master connection when
 * it is up.
 *
 * @throws {VmStateError} unless the VM is running.
 */
export function sshInvocation(
  vm: VmRecord,
  deps: VmDeps,
  req: { command?: string[]; tty?: boolean },
): string[] {
  assertStatus(vm, ["running"], "ssh into");
  const args = sshArgs(deps.guest.target(guestRef(vm)), req.command ?? [], { tty: req.tty });
  return ["ssh", ...args.map((a) => a === "ControlMaster=auto" ? "ControlMaster=no" : a)];
}

/**
 * The guest agent's `health` answer (hostname, uptime, boot id). Never throws: a VM that
 * is not running, or whose agent does not answer, is `ok: false` with the reason.
 */
export async function guestHealth(vm: VmRecord, deps: VmDeps): Promise<HealthView> {
  const base = { name: vm.name };
  if (vm.status !== "running") return { ...base, ok: false, error: `VM is ${vm.status}` };
  try {
    const answer = await deps.guest.agent(
      guestRef(vm),
      "health",
      deps.driver(vm.spec.vmm).hasVsock,
    ) as Record<string, unknown> | null;
    const uptime = answer?.uptime_seconds;
    return {
      ...base,
      ok: answer?.ok === true,
      ...(typeof answer?.hostname === "string" ? { hostname: answer.hostname } : {}),
      ...(typeof uptime === "number" && uptime >= 0 ? { uptime_seconds: uptime } : {}),
      ...(typeof answer?.boot_id === "string" ? { boot_id: answer.boot_id } : {}),
    };
  } catch (err) {
    return { ...base, ok: false, error: errorMessage(err) };
  }
}
