/**
 * `banger vm workspace …` (placeholder until workspaces land).
 *
 * @module
 */

import type { VmView } from "../daemon/api/vm.ts";
import type { Invocation } from "./_cli.ts";
import { type CliEnv, CliError } from "./env.ts";

/** What `vm run PATH` does after the VM boots. */
export function prepareAfterCreate(_env: CliEnv, _inv: Invocation): (vm: VmView) => Promise<void> {
  return () => Promise.reject(new CliError("Copying a repo into the VM is not available yet"));
}
