/**
 * The guest's sshd settings and per-VM host keys.
 *
 * `/etc/ssh/sshd_config.d/99-banger.conf` allows root in with a key only, reads keys from
 * `/root/.ssh/authorized_keys` (written onto the work disk by the daemon), skips reverse
 * DNS, and names the single host key sshd should load. Debian's `sshd_config` includes
 * `sshd_config.d/*.conf` before its own settings, and sshd keeps the first value it
 * sees, so these win.
 *
 * Images never ship host keys (banger pins each VM's key on first use, so clones must
 * not share one). `banger-ssh-hostkeys.service` generates the VM's own key before sshd
 * starts, only when it is missing. It generates ed25519 alone rather than `ssh-keygen -A`:
 * RSA-3072 generation costs seconds under software emulation, and one key type is all
 * banger pins.
 *
 * @module
 */

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
Description=banger: generate this VM's own SSH host key
Before=ssh.service sshd.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -C "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
RequiredBy=ssh.service sshd.service
`,
} as const;
