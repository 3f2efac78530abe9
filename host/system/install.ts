/**
 * `banger system install|status|restart|uninstall`: the system directories with their
 * owners and modes, the install record, the two units, and — only when installing into
 * `/` — `systemctl`. Everything under `root` (a temp dir in tests; `/` for real).
 *
 * | Path | Owner | Mode |
 * |---|---|---|
 * | `/etc/banger` (install.toml, config.toml) | root | 0755 (files 0644) |
 * | `/var/lib/banger`, `/var/cache/banger`, `/run/banger` | owner | 0700 |
 * | `/run/banger-root` | root | 0711 |
 * | `/var/lib/banger-jailer` | root | 0711 |
 *
 * @module
 */

import { writeFileAtomic } from "../os/atomic_file.ts";
import { BangerError } from "../errors.ts";
import { run, runText } from "../os/exec.ts";
import { type InstallRecord, readInstallRecord, renderInstallRecord } from "./install_record.ts";
import {
  helperRuntimeDir,
  installRecordPath,
  jailerBaseDir,
  systemLayout,
  systemUnitDir,
} from "../layout.ts";
import { HELPER_UNIT, OWNER_UNIT, renderHelperUnit, renderOwnerUnit } from "./units.ts";

/** A system install step failed. */
export class SystemInstallError extends BangerError {}

/** A user from the password database. */
export interface PasswdEntry {
  user: string;
  uid: number;
  gid: number;
  home: string;
}

/** Parses one `passwd(5)` line. Pure. @returns `undefined` when malformed. */
export function parsePasswdLine(line: string): PasswdEntry | undefined {
  const f = line.trim().split(":");
  if (f.length < 7) return undefined;
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || !f[5].startsWith("/")) return undefined;
  return { user: f[0], uid, gid, home: f[5] };
}

/**
 * Looks `user` up with `getent passwd` (so LDAP/NIS users work too).
 *
 * @throws {SystemInstallError} `not_found` when there is no such user.
 */
export async function lookupUser(user: string): Promise<PasswdEntry> {
  const out = await runText("getent", ["passwd", user], { okCodes: [0, 2] }).catch(() => "");
  const entry = parsePasswdLine(out.split("\n")[0] ?? "");
  if (!entry || entry.user !== user) {
    throw new SystemInstallError(`Cannot install for "${user}": no such user`, {
      code: "not_found",
      hint: "pass an existing login name: --owner $USER",
    });
  }
  return entry;
}

/** Options of {@linkcode systemInstall}. */
export interface SystemInstallOptions {
  /** Install root; `systemctl` runs only for `/`. */
  root: string;
  /** The owner (already looked up). */
  owner: PasswdEntry;
  /** Owner daemon command line. */
  daemonExec: readonly string[];
  /** Helper command line. */
  helperExec: readonly string[];
  /** banger's version. */
  version: string;
  /** Clock. @default {new Date()} */
  now?: Date;
}

/** What an install did, for the CLI to print. */
export interface SystemInstallReport {
  record: InstallRecord;
  units: string[];
  systemctl: boolean;
}

/**
 * Installs: directories, install record, units; on `/` also reloads systemd and enables
 * and starts both units. Re-running it updates the units and the record in place.
 *
 * @throws {SystemInstallError} when not run as root, or a step fails.
 */
export async function systemInstall(o: SystemInstallOptions): Promise<SystemInstallReport> {
  if (Deno.uid() !== 0) {
    throw new SystemInstallError("Cannot install banger system-wide: it needs root", {
      code: "permission_denied",
      hint: "sudo banger system install --owner $USER",
    });
  }
  const record: InstallRecord = {
    ownerUser: o.owner.user,
    ownerUid: o.owner.uid,
    ownerGid: o.owner.gid,
    ownerHome: o.owner.home,
    version: o.version,
    installedAt: (o.now ?? new Date()).toISOString(),
  };
  const spec = {
    ownerUser: o.owner.user,
    daemonExec: o.daemonExec,
    helperExec: o.helperExec,
    root: o.root,
  };
  const recordText = renderInstallRecord(record);
  const units = { [OWNER_UNIT]: renderOwnerUnit(spec), [HELPER_UNIT]: renderHelperUnit(spec) };
  const layout = systemLayout(o.root);
  await dir(layout.configDir, 0, 0, 0o755);
  for (const d of [layout.stateDir, layout.cacheDir, layout.runtimeDir]) {
    await dir(d, o.owner.uid, o.owner.gid, 0o700);
  }
  await dir(helperRuntimeDir(o.root), 0, 0, 0o711);
  await dir(jailerBaseDir(o.root), 0, 0, 0o711);
  await writeFileAtomic(installRecordPath(o.root), recordText, { mode: 0o644 });
  await Deno.chmod(installRecordPath(o.root), 0o644);
  const config = await Deno.lstat(layout.configFile).catch(() => undefined);
  if (!config) {
    await Deno.writeTextFile(layout.configFile, "# banger configuration (see README.md)\n", {
      mode: 0o644,
    });
  }
  await Deno.mkdir(systemUnitDir(o.root), { recursive: true, mode: 0o755 });
  for (const [name, text] of Object.entries(units)) {
    await writeFileAtomic(`${systemUnitDir(o.root)}/${name}`, text, { mode: 0o644 });
    await Deno.chmod(`${systemUnitDir(o.root)}/${name}`, 0o644);
  }
  const systemctl = isRealRoot(o.root);
  if (systemctl) {
    await run("systemctl", ["daemon-reload"]);
    await run("systemctl", ["enable", "--now", HELPER_UNIT, OWNER_UNIT]);
  }
  return { record, units: Object.keys(units), systemctl };
}

/** What {@linkcode systemStatus} reports. */
export interface SystemStatus {
  installed: boolean;
  record?: InstallRecord;
  /** `systemctl is-active` per unit (only for `/`). */
  active: Record<string, string>;
  /** Unit files present under the root. */
  units: string[];
}

/** Reports the install under `root`. Never throws for a missing install. */
export async function systemStatus(root: string): Promise<SystemStatus> {
  const record = await readInstallRecord(root);
  const units: string[] = [];
  for (const u of [HELPER_UNIT, OWNER_UNIT]) {
    if (await Deno.lstat(`${systemUnitDir(root)}/${u}`).then(() => true, () => false)) {
      units.push(u);
    }
  }
  const active: Record<string, string> = {};
  if (isRealRoot(root)) {
    for (const u of units) {
      active[u] = (await runText("systemctl", ["is-active", u], { okCodes: [0, 3, 4] }).catch(
        () => "unknown",
      )).trim();
    }
  }
  return { installed: record !== undefined, record, active, units };
}

/**
 * Restarts both units (helper first). Running VMs survive (`KillMode=process`).
 *
 * @throws {SystemInstallError} `failed_precondition` for a root other than `/`.
 */
export async function systemRestart(root: string): Promise<void> {
  if (!isRealRoot(root)) {
    throw new SystemInstallError(`Cannot restart the units of "${root}": systemd manages only /`, {
      code: "failed_precondition",
    });
  }
  await run("systemctl", ["restart", HELPER_UNIT]);
  await run("systemctl", ["restart", OWNER_UNIT]);
}

/**
 * Uninstalls: stops and disables the units (on `/`), removes them and the install
 * record; `purge` also removes config, state, cache and runtime directories.
 *
 * @throws {SystemInstallError} when not run as root.
 */
export async function systemUninstall(
  root: string,
  options: { purge?: boolean } = {},
): Promise<string[]> {
  if (Deno.uid() !== 0) {
    throw new SystemInstallError("Cannot uninstall banger: it needs root", {
      code: "permission_denied",
      hint: "sudo banger system uninstall",
    });
  }
  if (isRealRoot(root)) {
    await run("systemctl", ["disable", "--now", OWNER_UNIT, HELPER_UNIT], { okCodes: [0, 1, 5] });
  }
  const removed: string[] = [];
  const gone = async (path: string, recursive = false) => {
    try {
      await Deno.remove(path, { recursive });
      removed.push(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  };
  for (const u of [OWNER_UNIT, HELPER_UNIT]) await gone(`${systemUnitDir(root)}/${u}`);
  await gone(installRecordPath(root));
  if (isRealRoot(root)) await run("systemctl", ["daemon-reload"], { okCodes: [0, 1] });
  if (options.purge) {
    const l = systemLayout(root);
    for (const d of [l.stateDir, l.cacheDir, l.runtimeDir, helperRuntimeDir(root), l.configDir]) {
      await gone(d, true);
    }
    await gone(jailerBaseDir(root), true);
  }
  return removed;
}

function isRealRoot(root: string): boolean {
  return root.replace(/\/+$/, "") === "";
}

/** Creates `path` (and parents, 0755) and sets its owner and mode. */
async function dir(path: string, uid: number, gid: number, mode: number): Promise<void> {
  await Deno.mkdir(path, { recursive: true, mode: 0o755 });
  const info = await Deno.lstat(path);
  if (!info.isDirectory) {
    throw new SystemInstallError(`Cannot use "${path}": it is not a directory`, {
      code: "failed_precondition",
    });
  }
  await Deno.chown(path, uid, gid);
  await Deno.chmod(path, mode);
}
