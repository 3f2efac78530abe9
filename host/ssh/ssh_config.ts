/**
 * The `Host *.vm` ssh_config banger maintains, and the marked `Include` it adds to (or
 * removes from) `~/.ssh/config` on request — touching nothing else in that file.
 *
 * @module
 */

import { BangerError } from "../errors.ts";

/** A problem rendering or editing ssh configuration. */
export class SshConfigError extends BangerError {}

/** One VM in the generated config. */
export interface SshConfigHost {
  /** VM name (a DNS label). */
  name: string;
  /** Guest address. */
  ip: string;
}

/** Settings shared by every `*.vm` host. */
export interface SshConfigOptions {
  keyPath: string;
  knownHosts: string;
  /** Directory for ControlMaster sockets. */
  controlDir: string;
}

const BEGIN = "# >>> banger >>>";
const END = "# <<< banger <<<";

/**
 * Renders banger's ssh_config: a block per VM (its address) and the shared `*.vm`
 * settings. Pure.
 *
 * @throws {SshConfigError} when a value would inject configuration (whitespace, quotes,
 *   newlines).
 * @example
 * ```ts
 * renderSshConfig([{ name: "dev", ip: "172.16.0.2" }], opts);
 * ```
 */
export function renderSshConfig(hosts: readonly SshConfigHost[], o: SshConfigOptions): string {
  for (const v of [o.keyPath, o.knownHosts, o.controlDir]) safe(v, "path");
  const lines = [
    "# Managed by banger; rewritten as VMs come and go. Do not edit.",
    "# Use it from ~/.ssh/config with: banger ssh-config --install",
    "",
  ];
  for (const h of hosts) {
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(h.name)) {
      throw new SshConfigError(`Cannot write ssh_config for VM "${h.name}": not a DNS label`);
    }
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(h.ip)) {
      throw new SshConfigError(`Cannot write ssh_config for VM "${h.name}": bad address "${h.ip}"`);
    }
    lines.push(`Host ${h.name}.vm`, `  HostName ${h.ip}`, `  HostKeyAlias ${h.name}.vm`, "");
  }
  lines.push(
    "Host *.vm",
    "  User root",
    `  IdentityFile ${o.keyPath}`,
    "  IdentitiesOnly yes",
    `  UserKnownHostsFile ${o.knownHosts}`,
    "  StrictHostKeyChecking accept-new",
    "  HashKnownHosts no",
    "  ControlMaster auto",
    `  ControlPath ${o.controlDir}/ssh-%n.sock`,
    "  ControlPersist 120s",
    "  LogLevel ERROR",
    "",
  );
  return lines.join("\n");
}

/**
 * Adds the marked Include of `configPath` at the top of `~/.ssh/config` text (Include
 * lines must come before any Host block). Idempotent: an existing marked block is
 * replaced.
 */
export function addInclude(text: string, configPath: string): string {
  safe(configPath, "path");
  const block = `${BEGIN}\nInclude ${configPath}\n${END}\n`;
  const rest = removeInclude(text);
  return block + (rest.length && !rest.startsWith("\n") ? "\n" : "") + rest;
}

/** Removes banger's marked block, leaving every other byte as it was. */
export function removeInclude(text: string): string {
  const start = text.indexOf(BEGIN);
  if (start < 0) return text;
  const endMarker = text.indexOf(END, start);
  if (endMarker < 0) return text;
  let end = endMarker + END.length;
  if (text[end] === "\n") end++;
  if (start === 0 && text[end] === "\n") end++;
  return text.slice(0, start) + text.slice(end);
}

/** Whether the text holds banger's marked block. */
export function hasInclude(text: string): boolean {
  return text.includes(BEGIN) && text.includes(END);
}

function safe(value: string, what: string): void {
  if (/[\s"'\\#]/.test(value)) {
    throw new SshConfigError(
      `Cannot write ssh_config: the ${what} "${value}" contains whitespace or quotes`,
      {
        code: "invalid_argument",
        hint: "use paths without spaces or quotes",
      },
    );
  }
}
