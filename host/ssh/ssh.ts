/**
 * SSH to guests with the host's `ssh`: the managed ed25519 key, banger's own
 * `known_hosts` (host keys pinned on first use under the alias `<name>.vm`, so a reused
 * guest IP never confuses them), one multiplexed connection per VM (ControlMaster), and
 * remote commands shell-quoted so `sh -c 'exit 42'` arrives intact.
 *
 * @module
 */

import { writeFileAtomic } from "../os/atomic_file.ts";
import { BangerError } from "../errors.ts";
import { run } from "../os/exec.ts";

/** An SSH problem: key generation, a changed host key, a guest that does not answer. */
export class SshError extends BangerError {}

/** How to reach one guest. */
export interface SshTarget {
  /** Guest address. */
  host: string;
  /** Alias the host key is pinned under, e.g. `dev.vm`. */
  alias: string;
  /** Private key. */
  keyPath: string;
  /** banger's known_hosts. */
  knownHosts: string;
  /** ControlMaster socket; omitted to disable multiplexing. */
  controlPath?: string;
  /** @default {"root"} */
  user?: string;
}

/** Options for {@linkcode sshArgs}. */
export interface SshArgOptions {
  /** Allocate a TTY (`-t`) for interactive sessions. */
  tty?: boolean;
  /** Fail instead of prompting (no passwords, no host key questions beyond accept-new). */
  batch?: boolean;
  /** Seconds for the TCP connect. @default {5} */
  connectTimeout?: number;
  /** Keep the master connection this long after the last client. @default {"120s"} */
  controlPersist?: string;
}

/**
 * The `ssh` argument list (without the program) for `target`, followed by the remote
 * command when one is given. Pure.
 *
 * @example
 * ```ts
 * sshArgs(target, ["sh", "-c", "exit 42"]); // [..., "root@172.16.0.2", "'sh' '-c' 'exit 42'"]
 * ```
 */
export function sshArgs(
  target: SshTarget,
  command: readonly string[] = [],
  options: SshArgOptions = {},
): string[] {
  const args = [
    "-i",
    target.keyPath,
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${target.knownHosts}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "StrictHostKeyChecking=accept-new",
    // Plain names, so `vm delete` can find and remove a VM's entries.
    "-o",
    "HashKnownHosts=no",
    "-o",
    `HostKeyAlias=${target.alias}`,
    "-o",
    `ConnectTimeout=${options.connectTimeout ?? 5}`,
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ServerAliveInterval=15",
  ];
  if (options.batch) args.push("-o", "BatchMode=yes");
  if (target.controlPath) {
    args.push(
      "-o",
      "ControlMaster=auto",
      "-o",
      `ControlPath=${target.controlPath}`,
      "-o",
      `ControlPersist=${options.controlPersist ?? "120s"}`,
    );
  }
  args.push(options.tty ? "-t" : "-T");
  args.push(`${target.user ?? "root"}@${target.host}`);
  if (command.length) args.push(shellQuoteCommand(command));
  return args;
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * Joins a command into one string the remote shell splits back into exactly these words
 * (ssh re-tokenises its arguments, so each word must be quoted).
 */
export function shellQuoteCommand(words: readonly string[]): string {
  return words.map(shellQuote).join(" ");
}

/**
 * Creates an ed25519 key at `path` (and `path.pub`) unless it exists.
 *
 * @returns the public key line.
 * @throws {SshError} when ssh-keygen fails.
 */
export async function ensureKey(path: string): Promise<string> {
  try {
    return (await Deno.readTextFile(`${path}.pub`)).trim();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  try {
    await Deno.stat(path);
    throw new SshError(`Cannot use SSH key "${path}": its public half "${path}.pub" is missing`, {
      code: "failed_precondition",
      hint: `ssh-keygen -y -f ${path} > ${path}.pub`,
    });
  } catch (err) {
    if (err instanceof SshError) throw err;
  }
  const dir = path.slice(0, path.lastIndexOf("/"));
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f", path], {
    timeoutMs: 30_000,
  });
  return (await Deno.readTextFile(`${path}.pub`)).trim();
}

/**
 * Removes every known_hosts entry for the given names/addresses (on `vm delete`, so a
 * reused name or IP is not refused as a changed host key). Missing file is fine.
 */
export function forgetHostKeys(knownHosts: string, hosts: readonly string[]): Promise<void> {
  return rewrite(knownHosts, (text) => removeHostLines(text, hosts));
}

/**
 * Pins `publicKey` (an OpenSSH public key line) as the only key of `alias`, before the
 * host was ever contacted: the first connection then checks it like every later one.
 */
export function pinHostKey(knownHosts: string, alias: string, publicKey: string): Promise<void> {
  const [type, key] = publicKey.trim().split(/\s+/);
  if (!/^[a-z0-9@.-]+$/.test(type ?? "") || !/^[A-Za-z0-9+/=]+$/.test(key ?? "")) {
    return Promise.reject(
      new SshError(`Cannot pin a host key for "${alias}": not a public key`, {
        code: "invalid_argument",
      }),
    );
  }
  return rewrite(knownHosts, (text) => {
    const kept = removeHostLines(text, [alias]);
    return `${kept}${kept === "" || kept.endsWith("\n") ? "" : "\n"}${alias} ${type} ${key}\n`;
  });
}

/**
 * Rewrites `knownHosts` through `change`, one rewrite at a time per file in this process
 * (parallel deletes and starts would otherwise lose each other's lines).
 */
function rewrite(knownHosts: string, change: (text: string) => string): Promise<void> {
  const previous = rewrites.get(knownHosts) ?? Promise.resolve();
  const next = previous.then(async () => {
    let text = "";
    try {
      text = await Deno.readTextFile(knownHosts);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    const changed = change(text);
    if (changed !== text) await writeFileAtomic(knownHosts, changed, { mode: 0o600 });
  });
  const settled = next.catch(() => {});
  rewrites.set(knownHosts, settled);
  settled.then(() => {
    if (rewrites.get(knownHosts) === settled) rewrites.delete(knownHosts);
  });
  return next;
}

/** The last queued rewrite of each known_hosts file in this process. */
const rewrites = new Map<string, Promise<void>>();

/** Pure core of {@linkcode forgetHostKeys}: drops lines whose host list names any of `hosts`. */
export function removeHostLines(text: string, hosts: readonly string[]): string {
  const drop = new Set(hosts);
  return text.split("\n").filter((line) => {
    const first = line.trim().split(/\s+/)[0] ?? "";
    if (first.startsWith("#") || first === "") return true;
    return !first.split(",").some((h) => drop.has(h.replace(/^\[(.*)\](:\d+)?$/, "$1")));
  }).join("\n");
}

/** Whether an ssh failure's stderr says the pinned host key no longer matches. */
export function isHostKeyMismatch(stderr: string): boolean {
  return /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/.test(stderr);
}
