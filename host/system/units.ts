/**
 * The two systemd units of a system install, as pure renderers: the owner daemon
 * (`banger.service`, `User=<owner>`) and the root helper (`banger-helper.service`).
 *
 * Both use `KillMode=process` (a restart stops only the main process, never the VMMs it
 * started) and `RuntimeDirectoryPreserve=yes` (sockets and pid files under /run survive a
 * restart); the root unit also has `SendSIGKILL=no` so systemd never SIGKILLs leftovers
 * (reference-tool-inventory.md §3.1 and §10 lesson 6).
 *
 * @module
 */

import { BangerError } from "../errors.ts";

/** The owner daemon's unit file name. */
export const OWNER_UNIT = "banger.service";
/** The root helper's unit file name. */
export const HELPER_UNIT = "banger-helper.service";

/** A unit could not be rendered: a value would inject text. */
export class SystemUnitError extends BangerError {}

/** What the units are rendered from. */
export interface UnitSpec {
  /** The owner's login name (`User=`). */
  ownerUser: string;
  /** Command line of the owner daemon, e.g. `["/usr/local/bin/banger", "daemon"]`. */
  daemonExec: readonly string[];
  /** Command line of the helper, e.g. `["/usr/local/bin/banger-helper", "helper"]`. */
  helperExec: readonly string[];
  /** `BANGER_ROOT` for both, when not `/`. */
  root?: string;
}

// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,30}\$?$/;

/**
 * Quotes one `ExecStart=` word: `%` and `$` are doubled (systemd specifiers and
 * variables), and a word with a space, quote or backslash is double-quoted with C escapes.
 * Pure.
 *
 * @throws {SystemUnitError} for an empty word or a control character (a newline).
 */
export function quoteExecArg(arg: string): string {
  if (arg === "" || CONTROL.test(arg)) {
    throw new SystemUnitError(
      `Cannot put ${
        JSON.stringify(arg)
      } on an ExecStart= line: it is empty or has a control character`,
      { code: "invalid_argument" },
    );
  }
  const escaped = arg.replaceAll("%", "%%").replaceAll("$", "$$$$");
  if (!/[\s"'\\;]/.test(escaped)) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

function execLine(argv: readonly string[]): string {
  if (argv.length === 0 || !argv[0].startsWith("/")) {
    throw new SystemUnitError(
      `Cannot render ExecStart=: the program "${argv[0] ?? ""}" must be an absolute path`,
      { code: "invalid_argument" },
    );
  }
  return argv.map(quoteExecArg).join(" ");
}

function environment(spec: UnitSpec): string[] {
  const lines = ["Environment=BANGER_MODE=system"];
  if (spec.root !== undefined && spec.root !== "/") {
    lines.push(`Environment=BANGER_ROOT=${quoteExecArg(spec.root)}`);
  }
  return lines;
}

/**
 * The owner daemon's unit. Pure.
 *
 * @throws {SystemUnitError} for a user name that is not a login name, a relative program
 *   or a control character anywhere.
 * @example
 * ```ts
 * renderOwnerUnit({ ownerUser: "alice", daemonExec: ["/usr/local/bin/banger", "daemon"],
 *   helperExec: ["/usr/local/bin/banger-helper", "helper"] });
 * ```
 */
export function renderOwnerUnit(spec: UnitSpec): string {
  if (!USER_NAME.test(spec.ownerUser)) {
    throw new SystemUnitError(
      `Cannot render ${OWNER_UNIT}: ${JSON.stringify(spec.ownerUser)} is not a login name`,
      { code: "invalid_argument" },
    );
  }
  return [
    "[Unit]",
    "Description=banger owner daemon (VMs, images, RPC for the banger CLI)",
    `Requires=${HELPER_UNIT}`,
    `After=network.target ${HELPER_UNIT}`,
    "",
    "[Service]",
    "Type=simple",
    `User=${spec.ownerUser}`,
    ...environment(spec),
    `ExecStart=${execLine(spec.daemonExec)}`,
    "Restart=on-failure",
    "KillMode=process",
    "RuntimeDirectory=banger",
    "RuntimeDirectoryMode=0700",
    "RuntimeDirectoryPreserve=yes",
    "UMask=0077",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

/**
 * The root helper's unit. Pure.
 *
 * @throws {SystemUnitError} for a relative program or a control character.
 */
export function renderHelperUnit(spec: UnitSpec): string {
  return [
    "[Unit]",
    "Description=banger root helper (bridge, taps, NAT, loop/dm, jailer)",
    "After=network.target",
    "",
    "[Service]",
    "Type=simple",
    ...environment(spec),
    `ExecStart=${execLine(spec.helperExec)}`,
    "Restart=on-failure",
    "KillMode=process",
    "SendSIGKILL=no",
    "RuntimeDirectory=banger-root",
    "RuntimeDirectoryMode=0711",
    "RuntimeDirectoryPreserve=yes",
    "UMask=0077",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}
