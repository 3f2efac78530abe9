/**
 * `banger helper`: runs the root helper until SIGTERM or SIGINT. It trusts only what root
 * controls: the install record (the owner's uid and gid) and `/etc/banger/config.toml`
 * (which jailer and Firecracker binaries to run); the owner daemon chooses neither.
 *
 * @module
 */

import { parse as parseToml } from "smol-toml";
import { BangerError } from "../errors.ts";
import { whichProgram } from "../os/exec.ts";
import { HelperServer } from "./server.ts";
import { InProcessOps, type InProcessOpsOptions } from "../privileged/in_process_ops.ts";
import { readInstallRecord } from "../system/install_record.ts";
import { helperRuntimeDir, helperSocket, jailerBaseDir, systemLayout } from "../layout.ts";
import { DEFAULT_GUEST_NETWORK, type GuestNetwork } from "../net/defaults.ts";

/** The helper refused to start. */
export class HelperStartError extends BangerError {}

/** Options of {@linkcode runHelper}. */
export interface RunHelperOptions {
  /** Install root. @default {"/"} */
  root?: string;
  /** banger's version, reported by `ping`. */
  version: string;
  /** Resolves when the helper should stop (besides SIGTERM/SIGINT). */
  stop?: Promise<void>;
  /** Log sink. @default {stdout} */
  log?: (line: string) => void;
}

/**
 * Runs the helper; returns the exit code.
 *
 * @throws {HelperStartError} when not root, not installed, or the socket directory is
 *   not root's 0711.
 * @example
 * ```ts
 * Deno.exit(await runHelper({ version: "0.1.0" }));
 * ```
 */
export async function runHelper(o: RunHelperOptions): Promise<number> {
  const root = o.root ?? "/";
  if (Deno.uid() !== 0) {
    throw new HelperStartError("Cannot run the root helper: it must run as root", {
      code: "permission_denied",
      hint: "it is started by systemd: sudo systemctl start banger-helper",
    });
  }
  const record = await readInstallRecord(root);
  if (!record) {
    throw new HelperStartError(
      `Cannot run the root helper: banger is not installed under "${root}"`,
      {
        code: "failed_precondition",
        hint: "sudo banger system install --owner USER",
      },
    );
  }
  await checkRuntimeDir(helperRuntimeDir(root));
  const layout = systemLayout(root);
  const owner = { uid: record.ownerUid, gid: record.ownerGid };
  const config = await rootConfig(layout.configFile);
  const ops = new InProcessOps(layout, {
    owner,
    network: guestNetwork(config),
    jailer: await jailerConfig(config, layout.configFile, root),
  });
  const server = new HelperServer({
    socketPath: helperSocket(root),
    ops,
    ownerUid: owner.uid,
    ownerGid: owner.gid,
    version: o.version,
    log: o.log,
  });
  await server.listen();
  const stopped = Promise.withResolvers<void>();
  const onSignal = () => stopped.resolve();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  o.stop?.then(onSignal);
  try {
    await stopped.promise;
  } finally {
    Deno.removeSignalListener("SIGTERM", onSignal);
    Deno.removeSignalListener("SIGINT", onSignal);
    await server.close();
  }
  return 0;
}

async function checkRuntimeDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o711 });
  const info = await Deno.lstat(dir);
  if (!info.isDirectory || info.uid !== 0 || ((info.mode ?? 0) & 0o022) !== 0) {
    throw new HelperStartError(
      `Cannot use "${dir}" for the helper's socket: it must be a root-owned directory writable only by root`,
      { code: "permission_denied", hint: `sudo chown root:root ${dir} && sudo chmod 711 ${dir}` },
    );
  }
}

/** Root's config file, parsed (`{}` when there is none). */
async function rootConfig(configFile: string): Promise<Record<string, unknown>> {
  let text = "";
  try {
    text = await Deno.readTextFile(configFile);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return parseToml(text) as Record<string, unknown>;
}

/** The guest network root's config sets (the daemon reads the same keys), else the default. */
function guestNetwork(config: Record<string, unknown>): GuestNetwork {
  const d = DEFAULT_GUEST_NETWORK;
  const text = (v: unknown, fallback: string) => typeof v === "string" ? v : fallback;
  return {
    bridgeName: text(config.bridge_name, d.bridgeName),
    bridgeIp: text(config.bridge_ip, d.bridgeIp),
    cidr: text(config.cidr, d.cidr),
  };
}

/** The jailer settings from root's config; `undefined` when `jailer_bin` is unset. */
async function jailerConfig(
  config: Record<string, unknown>,
  configFile: string,
  root: string,
): Promise<InProcessOpsOptions["jailer"]> {
  const jailer = typeof config.jailer_bin === "string" ? config.jailer_bin : "";
  if (!jailer) return undefined;
  const fc = typeof config.firecracker_bin === "string" ? config.firecracker_bin : "firecracker";
  const jailerBin = await whichProgram(jailer);
  const firecrackerBin = await whichProgram(fc);
  if (!jailerBin || !firecrackerBin) {
    throw new HelperStartError(
      `Cannot run the root helper: jailer_bin "${jailer}" or firecracker_bin "${fc}" not found`,
      { code: "failed_precondition", hint: `fix ${configFile}` },
    );
  }
  return { jailerBin, firecrackerBin, chrootBase: jailerBaseDir(root) };
}
