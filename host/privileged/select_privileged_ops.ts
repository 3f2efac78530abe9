/**
 * Chooses how the owner daemon performs privileged work: in its own process (development:
 * one process, as root, with `BANGER_HOME` or the XDG layout) or through the root helper
 * (a system install: the daemon runs as the owner and its layout is the system layout).
 *
 * The in-process adapter (which reaches libc) is imported lazily, through a computed URL
 * Deno does not resolve at startup: the owner role's static module graph holds no FFI
 * module. In helper mode it still runs the unprivileged ext4 operations, which call no
 * libc, so the owner daemon and CLI need no `--allow-ffi`.
 *
 * @module
 */

import { HelperOps } from "../helper/client.ts";
import type { InProcessOps } from "./in_process_ops.ts";
import { helperSocket, type Layout } from "../layout.ts";
import type { PrivilegedOps } from "./privileged_ops.ts";

/** `host/privileged/in_process_ops.ts`, loaded on first use (`deno task compile` includes it). */
async function inProcessOps(layout: Layout): Promise<InProcessOps> {
  const url = new URL("./in_process_ops.ts", import.meta.url);
  const mod = await import(url.href) as { InProcessOps: typeof InProcessOps };
  return new mod.InProcessOps(layout);
}

/** What {@linkcode selectPrivilegedOps} chose. */
export interface PrivilegesChoice {
  /** The implementation to give the services. */
  ops: PrivilegedOps;
  /** `helper` for a system install, else `in-process`. */
  mode: "in-process" | "helper";
  /** One line for logs and `banger doctor`. */
  detail: string;
  /**
   * Checks that the implementation answers and says who does (the helper's pid and the
   * uid it serves). @throws {PrivilegedOpsError} when the helper cannot be reached
   */
  probe(): Promise<string>;
}

/**
 * The `PrivilegedOps` for `layout`: the helper transport (ext4 work stays local and
 * unprivileged) for the system layout, the in-process adapter otherwise.
 *
 * @param options.root the install root whose helper socket to use. @default {the root the
 *   system layout was made for}
 * @example
 * ```ts
 * const { ops, mode } = await selectPrivilegedOps(layout, { root: Deno.env.get("BANGER_ROOT") });
 * ```
 */
export async function selectPrivilegedOps(
  layout: Layout,
  options: { root?: string } = {},
): Promise<PrivilegesChoice> {
  const local = await inProcessOps(layout);
  if (layout.mode !== "system") {
    return {
      ops: local,
      mode: "in-process",
      detail: "host operations run in the daemon's own process (no system install)",
      probe: () => Promise.resolve(`in-process, uid ${Deno.uid()}`),
    };
  }
  const root = options.root ?? (layout.configDir.replace(/\/etc\/banger$/, "") || "/");
  const socketPath = helperSocket(root);
  const ops = new HelperOps({ socketPath, local });
  return {
    ops,
    mode: "helper",
    detail: `host operations go to the root helper at ${socketPath}`,
    probe: async () => {
      const ping = await ops.ping();
      return `root helper pid ${ping.pid}, serving uid ${ping.owner_uid}`;
    },
  };
}
