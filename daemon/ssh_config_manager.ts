/**
 * Keeps `~/.config/banger/ssh_config` (a `Host <name>.vm` block per VM plus shared
 * settings) current, and adds or removes the marked `Include` in the user's
 * `~/.ssh/config` only when asked — touching nothing else in that file.
 *
 * @module
 */

import { writeFileAtomic } from "../host/os/atomic_file.ts";
import { BangerError } from "../host/errors.ts";
import type { Layout } from "../host/layout.ts";
import { addInclude, hasInclude, removeInclude, renderSshConfig } from "../host/ssh/ssh_config.ts";

/** Result of {@linkcode SshConfigManager.update}. */
export interface SshConfigResult {
  path: string;
  user_config: string;
  included: boolean;
  changed: boolean;
}

/** Writes banger's ssh_config and edits the user's Include. */
export class SshConfigManager {
  constructor(
    readonly layout: Layout,
    readonly options: {
      keyPath: string;
      knownHosts: string;
      controlDir: string;
      hosts: () => { name: string; ip: string }[];
    },
  ) {}

  /** Rewrites banger's ssh_config from the current VMs. */
  async refresh(): Promise<void> {
    const text = renderSshConfig(this.options.hosts(), {
      keyPath: this.options.keyPath,
      knownHosts: this.options.knownHosts,
      controlDir: this.options.controlDir,
    });
    await Deno.mkdir(this.layout.configDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.layout.sshConfigFile, text, { mode: 0o600 });
  }

  /**
   * Shows, installs or uninstalls the Include in `<home>/.ssh/config`.
   *
   * @throws {BangerError} `invalid_argument` for a relative home.
   */
  async update(home: string, action: "show" | "install" | "uninstall"): Promise<SshConfigResult> {
    if (!home.startsWith("/") || home.includes("\n")) {
      throw new BangerError(`Cannot use home directory "${home}": it must be an absolute path`, {
        code: "invalid_argument",
      });
    }
    await this.refresh();
    const userConfig = `${home}/.ssh/config`;
    let text = "";
    try {
      text = await Deno.readTextFile(userConfig);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    const next = action === "install"
      ? addInclude(text, this.layout.sshConfigFile)
      : action === "uninstall"
      ? removeInclude(text)
      : text;
    const changed = next !== text;
    if (changed) {
      await Deno.mkdir(`${home}/.ssh`, { recursive: true, mode: 0o700 });
      const mode = await Deno.stat(userConfig).then((i) => (i.mode ?? 0o600) & 0o777, () => 0o600);
      await writeFileAtomic(userConfig, next, { mode });
    }
    return {
      path: this.layout.sshConfigFile,
      user_config: userConfig,
      included: hasInclude(next),
      changed,
    };
  }
}
