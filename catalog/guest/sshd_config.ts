/**
 * The guest's sshd settings and per-VM host keys.
 *
 * `/etc/ssh/sshd_config.d/99-banger.conf` allows root in with a key only, reads keys from
 * `/root/.ssh/authorized_keys` (written onto the work disk by the daemon), skips reverse
 * DNS, and names the single host key sshd should load. Debian's `sshd_config` includes
 * `sshd_config.d/*.conf` before its own settings, and sshd keeps the first value it
 * sees, so these win.
 *
 * Images never ship host keys (clones must not share one). The daemon makes each VM's
 * key itself, writes it onto the work disk (`/root/.banger/ssh_host_ed25519_key`) and
 * pins it before the first boot, so even the first connection checks it:
 * `banger-ssh-hostkeys.service` installs that key before sshd starts on every boot. Only
 * without one (a disk from an older daemon) does it generate a key, once, which banger
 * then pins on first use. It makes ed25519 alone rather than `ssh-keygen -A`: RSA-3072
 * generation costs seconds under software emulation, and one key type is all banger pins.
 *
 * @module
 */

/** Where the daemon puts the VM's host key on the work disk (mounted on `/root`). */
export const PROVIDED_HOST_KEY = "/root/.banger/ssh_host_ed25519_key";

// `$$` is a literal `$` for systemd; the shell then sees `$k` and `$p`.
const HOST_KEY_SCRIPT = `k=/etc/ssh/ssh_host_ed25519_key; p=${PROVIDED_HOST_KEY}; ` +
  `if [ -s "$$p" ]; then install -m 600 "$$p" "$$k" && install -m 644 "$$p.pub" "$$k.pub"; ` +
  `elif [ ! -e "$$k" ]; then /usr/bin/ssh-keygen -q -t ed25519 -N "" -C "" -f "$$k"; fi`;

/** The sshd drop-in and the host-key unit. */
export const sshdConfig = {
  /** Where the drop-in is installed. */
  dropInPath: "/etc/ssh/sshd_config.d/99-banger.conf",
  /** The drop-in (mode 0644). */
  dropIn: `# banger: key-only root login; the host key is generated per VM at first boot
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
AuthorizedKeysFile /root/.ssh/authorized_keys
HostKey /etc/ssh/ssh_host_ed25519_key
`,
  /** The host-key unit's file name under `/etc/systemd/system/`. */
  hostKeysUnitName: "banger-ssh-hostkeys.service",
  /** The host-key unit (mode 0644), enabled in `multi-user.target`. */
  hostKeysUnit: `[Unit]
Description=banger: install this VM's own SSH host key (the daemon's, or a generated one)
Before=ssh.service sshd.service
RequiresMountsFor=/root

[Service]
Type=oneshot
ExecStart=/bin/sh -c '${HOST_KEY_SCRIPT}'

[Install]
WantedBy=multi-user.target
RequiredBy=ssh.service sshd.service
`,
} as const;
