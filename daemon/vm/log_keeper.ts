/**
 * Keeps the logs of running VMs bounded: every half minute, each running VM's
 * `serial.log`, `vmm.log` and `metrics.json` is capped to its last few MiB
 * (`host/os/log_file.ts`), so a guest printing without end cannot fill the host's disk.
 *
 * @module
 */

import { errorMessage } from "../../host/errors.ts";
import { vmFiles } from "../../host/layout.ts";
import { capLog } from "../../host/os/log_file.ts";
import { listVms } from "../../store/vms.ts";
import type { Logger } from "../logger.ts";
import type { VmDeps } from "./deps.ts";

const EVERY_MS = 30_000;

/** Caps every running VM's logs once; returns the files it capped. */
export async function capVmLogs(deps: Pick<VmDeps, "store">, log: Logger): Promise<string[]> {
  const capped: string[] = [];
  for (const vm of listVms(deps.store)) {
    if (vm.status !== "running" && vm.status !== "starting") continue;
    for (const name of [vmFiles.serialLog, vmFiles.vmmLog, vmFiles.metrics]) {
      const path = `${vm.runtime.vmDir}/${name}`;
      try {
        if (await capLog(path)) capped.push(path);
      } catch (err) {
        log.warn("log not capped", { vm: vm.name, path, error: errorMessage(err) });
      }
    }
  }
  if (capped.length) log.info("logs capped", { files: capped.length });
  return capped;
}

/** Runs {@linkcode capVmLogs} every 30 s until disposed. */
export function startLogKeeper(deps: Pick<VmDeps, "store">, log: Logger): Disposable {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    capVmLogs(deps, log).finally(() => running = false);
  }, EVERY_MS);
  Deno.unrefTimer(timer);
  return { [Symbol.dispose]: () => clearInterval(timer) };
}
