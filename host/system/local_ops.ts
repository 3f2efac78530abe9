/**
 * The in-process operations behind `banger system …` and `banger helper`, shaped for the
 * CLI (`commands/system_cmd.ts`, `SystemLocalOps`): plain data in and out. `main.ts`
 * builds them with the command lines the units should run.
 *
 * @module
 */

import { runHelper } from "../helper/main.ts";
import { installRecordPath } from "../layout.ts";
import {
  lookupUser,
  systemInstall,
  systemRestart,
  systemStatus,
  systemUninstall,
} from "./install.ts";

/** What {@linkcode systemLocalOps} needs from the composition root. */
export interface SystemLocalOptions {
  /** The install root when `--root` is not given (`BANGER_ROOT`, else `/`). */
  defaultRoot: string;
  /** banger's version. */
  version: string;
  /** The owner daemon's command line; `bin` overrides the program. */
  daemonExec(bin?: string): string[];
  /** The helper's command line; `bin` overrides the program. */
  helperExec(bin?: string): string[];
}

/** The operations, in the shape `commands/system_cmd.ts` (`SystemLocalOps`) expects. */
export interface SystemOps {
  runHelper(root: string | undefined): Promise<number>;
  install(a: { root?: string; owner: string; bin?: string; helperBin?: string }): Promise<{
    ownerUser: string;
    ownerUid: number;
    installRecord: string;
    units: string[];
    systemctl: boolean;
  }>;
  status(root: string | undefined): Promise<{
    installed: boolean;
    ownerUser?: string;
    ownerUid?: number;
    version?: string;
    installedAt?: string;
    units: string[];
    active: Record<string, string>;
  }>;
  restart(root: string | undefined): Promise<void>;
  uninstall(root: string | undefined, purge: boolean): Promise<string[]>;
}

/**
 * Builds the operations.
 *
 * @example
 * ```ts
 * const system = systemLocalOps({ defaultRoot: "/", version, daemonExec, helperExec });
 * await system.status(undefined);
 * ```
 */
export function systemLocalOps(o: SystemLocalOptions): SystemOps {
  const rootOf = (root: string | undefined) => root ?? o.defaultRoot;
  return {
    runHelper: (root: string | undefined) => runHelper({ root: rootOf(root), version: o.version }),
    async install(a: { root?: string; owner: string; bin?: string; helperBin?: string }) {
      const root = rootOf(a.root);
      const r = await systemInstall({
        root,
        owner: await lookupUser(a.owner),
        daemonExec: o.daemonExec(a.bin),
        helperExec: o.helperExec(a.helperBin),
        version: o.version,
      });
      return {
        ownerUser: r.record.ownerUser,
        ownerUid: r.record.ownerUid,
        installRecord: installRecordPath(root),
        units: r.units,
        systemctl: r.systemctl,
      };
    },
    async status(root: string | undefined) {
      const st = await systemStatus(rootOf(root));
      return {
        installed: st.installed,
        ownerUser: st.record?.ownerUser,
        ownerUid: st.record?.ownerUid,
        version: st.record?.version,
        installedAt: st.record?.installedAt,
        units: st.units,
        active: st.active,
      };
    },
    restart: (root: string | undefined) => systemRestart(rootOf(root)),
    uninstall: (root: string | undefined, purge: boolean) =>
      systemUninstall(rootOf(root), { purge }),
  };
}
