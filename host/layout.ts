/**
 * Every on-disk name banger uses, in one place: the XDG directories, the files inside
 * them and the per-VM, per-image and per-kernel directories.
 *
 * `BANGER_HOME=/some/dir` roots everything under one directory (`config/`, `state/`,
 * `cache/`, `run/`) for tests and isolated runs.
 *
 * System mode (`banger system install`, selected by `BANGER_MODE=system` or by the
 * install record `/etc/banger/install.toml`): config `/etc/banger` (root's), state
 * `/var/lib/banger`, cache `/var/cache/banger`, runtime `/run/banger` (the owner's), the
 * root helper in `/run/banger-root`. `BANGER_ROOT=/some/dir` prefixes every system path
 * (tests install into a temp dir).
 *
 * @module
 */

import { BangerError } from "./errors.ts";

/** A problem with banger's own directories. */
export class LayoutError extends BangerError {}

/** Where banger keeps everything. All paths are absolute. */
export interface Layout {
  /** `~/.config/banger` */
  configDir: string;
  /** `~/.config/banger/config.toml` */
  configFile: string;
  /** `~/.config/banger/ssh_config`: the `Host *.vm` block users may Include. */
  sshConfigFile: string;
  /** `~/.local/state/banger` */
  stateDir: string;
  /** `~/.cache/banger` */
  cacheDir: string;
  /** `$XDG_RUNTIME_DIR/banger`: sockets and lock files. */
  runtimeDir: string;
  /**
   * `system` for a system install: `configDir` is root's (read-only to the owner daemon).
   * @default {"user"}
   */
  mode?: "user" | "system";
}

/** Which environment variables {@linkcode resolveLayout} reads. */
export interface LayoutEnv {
  HOME?: string;
  XDG_CONFIG_HOME?: string;
  XDG_STATE_HOME?: string;
  XDG_CACHE_HOME?: string;
  XDG_RUNTIME_DIR?: string;
  BANGER_HOME?: string;
  /** `system` selects the system layout. */
  BANGER_MODE?: string;
  /** Prefix of every system path. @default {"/"} */
  BANGER_ROOT?: string;
}

/** Reads the variables {@linkcode resolveLayout} needs from the process environment. */
export function layoutEnvFromProcess(): LayoutEnv {
  const get = (k: string) => Deno.env.get(k) || undefined;
  return {
    HOME: get("HOME"),
    XDG_CONFIG_HOME: get("XDG_CONFIG_HOME"),
    XDG_STATE_HOME: get("XDG_STATE_HOME"),
    XDG_CACHE_HOME: get("XDG_CACHE_HOME"),
    XDG_RUNTIME_DIR: get("XDG_RUNTIME_DIR"),
    BANGER_HOME: get("BANGER_HOME"),
    BANGER_MODE: get("BANGER_MODE"),
    BANGER_ROOT: get("BANGER_ROOT"),
  };
}

/**
 * Computes banger's directories from the environment. Pure: creates nothing.
 *
 * @param runDirWritable whether `/run` can hold a per-user runtime dir (the fallback
 *   when `XDG_RUNTIME_DIR` is unset); otherwise `/tmp` is used.
 * @throws {LayoutError} when neither `BANGER_HOME` nor `HOME` is set.
 * @example
 * ```ts
 * const layout = resolveLayout({ BANGER_HOME: "/tmp/bh" }, 1000, false);
 * layout.runtimeDir; // "/tmp/bh/run"
 * ```
 */
export function resolveLayout(env: LayoutEnv, uid: number, runDirWritable: boolean): Layout {
  if (env.BANGER_HOME) {
    const root = absolute(env.BANGER_HOME, "BANGER_HOME");
    return withFiles({
      configDir: `${root}/config`,
      stateDir: `${root}/state`,
      cacheDir: `${root}/cache`,
      runtimeDir: `${root}/run`,
    });
  }
  if (env.BANGER_MODE === "system") return systemLayout(env.BANGER_ROOT ?? "/");
  if (!env.HOME) {
    throw new LayoutError("Cannot find banger's directories: HOME is not set", {
      code: "failed_precondition",
      hint: "set HOME, or BANGER_HOME to keep everything in one directory",
    });
  }
  const home = absolute(env.HOME, "HOME");
  const xdg = (value: string | undefined, name: string, fallback: string) =>
    value ? absolute(value, name) : `${home}/${fallback}`;
  const runtimeBase = env.XDG_RUNTIME_DIR ? absolute(env.XDG_RUNTIME_DIR, "XDG_RUNTIME_DIR") : "";
  return withFiles({
    configDir: `${xdg(env.XDG_CONFIG_HOME, "XDG_CONFIG_HOME", ".config")}/banger`,
    stateDir: `${xdg(env.XDG_STATE_HOME, "XDG_STATE_HOME", ".local/state")}/banger`,
    cacheDir: `${xdg(env.XDG_CACHE_HOME, "XDG_CACHE_HOME", ".cache")}/banger`,
    runtimeDir: runtimeBase
      ? `${runtimeBase}/banger`
      : runDirWritable
      ? `/run/banger-${uid}`
      : `/tmp/banger-${uid}`,
  });
}

/**
 * The system-mode layout under `root` (`/` for a real install). Pure.
 *
 * @throws {LayoutError} when `root` is not absolute.
 * @example
 * ```ts
 * systemLayout("/").stateDir; // "/var/lib/banger"
 * ```
 */
export function systemLayout(root: string): Layout {
  const r = systemPrefix(root);
  const stateDir = `${r}/var/lib/banger`;
  return {
    configDir: `${r}/etc/banger`,
    configFile: `${r}/etc/banger/config.toml`,
    // /etc/banger is root's; the owner daemon writes its ssh_config next to its state.
    sshConfigFile: `${stateDir}/ssh_config`,
    stateDir,
    cacheDir: `${r}/var/cache/banger`,
    runtimeDir: `${r}/run/banger`,
    mode: "system",
  };
}

/** `""` for `/`, else `root` without a trailing slash. @throws {LayoutError} */
export function systemPrefix(root: string): string {
  const r = absolute(root, "BANGER_ROOT");
  return r === "/" ? "" : r;
}

/** The install record written by `banger system install`. */
export const installRecordPath = (root: string): string =>
  `${systemPrefix(root)}/etc/banger/install.toml`;
/** The root helper's runtime directory (root-owned, 0711). */
export const helperRuntimeDir = (root: string): string => `${systemPrefix(root)}/run/banger-root`;
/** The root helper's socket (owned by the owner uid, 0600). */
export const helperSocket = (root: string): string => `${helperRuntimeDir(root)}/helper.sock`;
/** The jailer's `--chroot-base-dir` (root-owned; same filesystem as the state dir). */
export const jailerBaseDir = (root: string): string =>
  `${systemPrefix(root)}/var/lib/banger-jailer`;
/** Where the systemd units go. */
export const systemUnitDir = (root: string): string => `${systemPrefix(root)}/etc/systemd/system`;

function withFiles(dirs: Omit<Layout, "configFile" | "sshConfigFile">): Layout {
  return {
    ...dirs,
    configFile: `${dirs.configDir}/config.toml`,
    sshConfigFile: `${dirs.configDir}/ssh_config`,
  };
}

function absolute(path: string, name: string): string {
  if (!path.startsWith("/")) {
    throw new LayoutError(`Cannot use ${name}="${path}": it must be an absolute path`, {
      code: "invalid_argument",
    });
  }
  return path.replace(/\/+$/, "") || "/";
}

/** The daemon's RPC socket. */
export const daemonSocket = (l: Layout): string => `${l.runtimeDir}/daemon.sock`;
/** Held (flock) by the running daemon for its whole life. */
export const daemonPidLock = (l: Layout): string => `${l.runtimeDir}/daemon.pid`;
/** Held (flock) by a CLI while it starts the daemon, so racing CLIs start exactly one. */
export const daemonStartLock = (l: Layout): string => `${l.runtimeDir}/daemon-start.lock`;
/** Where a daemon started in the background writes what it prints before its log opens. */
export const daemonStartupLog = (l: Layout): string => `${l.runtimeDir}/daemon-startup.log`;
/** The SQLite store. */
export const storePath = (l: Layout): string => `${l.stateDir}/banger.db`;
/** The daemon's JSON-lines log. */
export const daemonLogPath = (l: Layout): string => `${l.stateDir}/daemon.log`;
/** Managed SSH material. */
export const sshDir = (l: Layout): string => `${l.stateDir}/ssh`;
/** The managed ed25519 key used for every guest. */
export const defaultSshKey = (l: Layout): string => `${sshDir(l)}/id_ed25519`;
/** banger's own known_hosts, where guest host keys are pinned on first use. */
export const knownHostsPath = (l: Layout): string => `${sshDir(l)}/known_hosts`;
/** Per-VM directories: `vms/<id>/`. */
export const vmsDir = (l: Layout): string => `${l.stateDir}/vms`;
/** Published images: `images/<name>/`. */
export const imagesDir = (l: Layout): string => `${l.stateDir}/images`;
/** Published kernels: `kernels/<name>/`. */
export const kernelsDir = (l: Layout): string => `${l.stateDir}/kernels`;
/** Content-addressed OCI blobs: `oci/blobs/sha256/<hex>`. */
export const ociBlobsDir = (l: Layout): string => `${l.cacheDir}/oci/blobs/sha256`;
/** Cached Debian packages and built golden-image trees. */
export const buildCacheDir = (l: Layout): string => `${l.cacheDir}/build`;

/** Files inside one VM's directory (`vms/<id>/`). */
export const vmFiles = {
  /** Runtime handles (pid, loops, dm, tap), rewritten atomically (DESIGN.md invariant 6). */
  handles: "handles.json",
  /** Sparse copy-on-write file behind the root disk snapshot. */
  rootCow: "root.cow",
  /** Per-VM root disk when device-mapper is missing (reflink or sparse copy). */
  rootCopy: "root.ext4",
  /** The `/root` work disk. */
  workDisk: "work.ext4",
  /** Firecracker API socket. */
  apiSocket: "fc.sock",
  /** Host side of the guest vsock. */
  vsockSocket: "vsock.sock",
  /** Serial console output. */
  serialLog: "serial.log",
  /** VMM log. */
  vmmLog: "vmm.log",
  /** Firecracker metrics (JSON lines). */
  metrics: "metrics.json",
  /** QEMU monitor socket. */
  qemuMonitor: "qemu.sock",
  /** The VMM's pid file. */
  pidFile: "vmm.pid",
  /** The guest's SSH host key, made by the daemon (its `.pub` beside it). */
  hostKey: "ssh_host_ed25519_key",
} as const;

/** The AF_UNIX `sun_path` limit, including the terminating NUL. */
export const UNIX_PATH_MAX = 108;

/**
 * Creates banger's directories (0700) and refuses ones owned by another user or writable
 * by group or others.
 *
 * @throws {LayoutError} naming the directory and what is wrong with it.
 */
export async function ensureLayout(layout: Layout, uid: number): Promise<void> {
  const system = layout.mode === "system";
  if (system) await checkSystemConfigDir(layout.configDir, uid);
  const dirs = [layout.stateDir, layout.cacheDir, layout.runtimeDir];
  for (const dir of system ? dirs : [layout.configDir, ...dirs]) {
    await ensurePrivateDir(dir, uid);
  }
  const sock = daemonSocket(layout);
  if (new TextEncoder().encode(sock).length >= UNIX_PATH_MAX) {
    throw new LayoutError(
      `Cannot use runtime directory "${layout.runtimeDir}": the socket path is longer than ${
        UNIX_PATH_MAX - 1
      } bytes`,
      { code: "failed_precondition", hint: "use a shorter XDG_RUNTIME_DIR or BANGER_HOME" },
    );
  }
}

/**
 * Creates `dir` (and parents) with mode 0700 if missing, then checks it.
 *
 * @throws {LayoutError} when it is not a directory, is owned by another uid, or is
 *   group/world-writable.
 */
export async function ensurePrivateDir(dir: string, uid: number): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await Deno.lstat(dir);
  checkPrivateDir(dir, info, uid);
}

/** System config dir: must exist, be root's (or ours) and writable by nobody else. */
async function checkSystemConfigDir(dir: string, uid: number): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(dir);
  } catch (err) {
    throw new LayoutError(`Cannot use "${dir}": ${err instanceof Error ? err.message : err}`, {
      code: "failed_precondition",
      hint: "sudo banger system install --owner $USER",
      cause: err,
    });
  }
  checkPrivateDir(dir, info, info.uid === 0 ? 0 : uid);
}

/** Pure check behind {@linkcode ensurePrivateDir}. */
export function checkPrivateDir(dir: string, info: Deno.FileInfo, uid: number): void {
  if (!info.isDirectory) {
    throw new LayoutError(`Cannot use "${dir}": it is not a directory`, {
      code: "failed_precondition",
    });
  }
  if (info.uid !== null && info.uid !== uid) {
    throw new LayoutError(
      `Cannot use "${dir}": it is owned by uid ${info.uid}, not by uid ${uid}`,
      { code: "permission_denied", hint: `remove it or fix its owner: chown ${uid} ${dir}` },
    );
  }
  if (info.mode !== null && (info.mode & 0o022) !== 0) {
    throw new LayoutError(
      `Cannot use "${dir}": it is writable by ${
        (info.mode & 0o002) !== 0 ? "others" : "its group"
      } (mode ${(info.mode & 0o777).toString(8)})`,
      { code: "permission_denied", hint: `chmod 700 ${dir}` },
    );
  }
}

/** Whether `/run` can hold the per-user runtime directory fallback. */
export async function runDirWritable(): Promise<boolean> {
  try {
    const info = await Deno.stat("/run");
    return info.isDirectory && Deno.uid() === 0;
  } catch {
    return false;
  }
}
