/**
 * What banger puts into every guest root filesystem: the guest scripts, their systemd
 * units and enablement symlinks, the sshd drop-in, `/etc/fstab` (root on `/dev/vda`, the
 * work disk `/dev/vdb` on `/root`) and the masks that keep boots from waiting on things a
 * microVM never has. {@linkcode guestPieces} lists them as data — paths, modes, contents,
 * symlink targets, all owned by root — so the same list can be written into a directory
 * tree ({@linkcode writeGuestPieces}, for the golden image) or into an existing ext4 with
 * debugfs (`mkdir`, `write`, `sif mode/uid/gid`, `symlink`; for pulled images).
 *
 * Masked (symlinked to `/dev/null`): the wait-online services (banger configures the
 * network itself, so they would only wait for their 90 s timeout), apt/dpkg/e2scrub/
 * fstrim/man-db timers, `systemd-pstore`. `/etc/systemd/network/99-default.link` is
 * masked too, so udev keeps the kernel's `eth0` name instead of a predictable one.
 *
 * @module
 */

import { agent } from "./agent.ts";
import { firstBoot } from "./first_boot.ts";
import { networkBootstrap } from "./network_bootstrap.ts";
import { sshdConfig } from "./sshd_config.ts";

/** One thing to create in a guest root filesystem; paths are absolute guest paths. */
export type GuestPiece =
  | { kind: "dir"; path: string; mode: number }
  | { kind: "file"; path: string; mode: number; content: string }
  | { kind: "symlink"; path: string; target: string };

/** Options for {@linkcode guestPieces}. */
export interface GuestPiecesOptions {
  /** Also install `banger-first-boot` and its pending marker (for pulled images). @default {false} */
  firstBoot?: boolean;
}

const UNIT_DIR = "/etc/systemd/system";

/** Units masked so a boot never waits for them. */
const MASKED_UNITS = [
  "systemd-networkd-wait-online.service",
  "NetworkManager-wait-online.service",
  "apt-daily.service",
  "apt-daily.timer",
  "apt-daily-upgrade.service",
  "apt-daily-upgrade.timer",
  "dpkg-db-backup.timer",
  "e2scrub_all.timer",
  "e2scrub_reap.service",
  "fstrim.timer",
  "man-db.timer",
  "systemd-pstore.service",
];

/**
 * The guest's `/etc/fstab`. The work disk holds `/root/.ssh/authorized_keys`, so its mount
 * must not give up while udev is still working through coldplug: on a loaded host under
 * software emulation that takes well over the 5 s once used here, and a missed mount
 * locked SSH out for the whole boot timeout. `nofail` keeps a VM without one booting.
 */
const FSTAB = `# banger: / is /dev/vda (mounted by the initramfs); /root is this VM's work disk
# x-systemd.growfs: / grows online to its disk at boot (the disk is the VM's root size)
/dev/vda / ext4 rw,relatime,x-systemd.growfs 0 0
/dev/vdb /root ext4 rw,relatime,nofail,x-systemd.device-timeout=2min 0 2
`;

/**
 * Everything to write into a guest root filesystem, parents before children.
 *
 * @example
 * ```ts
 * for (const piece of guestPieces()) console.log(piece.kind, piece.path);
 * // dir /usr/local/libexec … file /usr/local/libexec/banger-network-bootstrap …
 * ```
 */
export function guestPieces(options: GuestPiecesOptions = {}): GuestPiece[] {
  const dir = (path: string, mode = 0o755): GuestPiece => ({ kind: "dir", path, mode });
  const file = (path: string, content: string, mode = 0o644): GuestPiece => ({
    kind: "file",
    path,
    mode,
    content,
  });
  const link = (path: string, target: string): GuestPiece => ({ kind: "symlink", path, target });
  const enable = (unit: string, target: string) =>
    link(`${UNIT_DIR}/${target}/${unit}`, `${UNIT_DIR}/${unit}`);
  const pieces: GuestPiece[] = [
    // Parents too: an image without systemd or sshd yet has no /etc/systemd or /etc/ssh.
    dir("/usr/local"),
    dir("/usr/local/libexec"),
    dir("/etc/ssh"),
    dir("/etc/ssh/sshd_config.d"),
    dir("/etc/systemd"),
    dir(UNIT_DIR),
    dir(`${UNIT_DIR}/multi-user.target.wants`),
    dir(`${UNIT_DIR}/network-online.target.wants`),
    dir(`${UNIT_DIR}/ssh.service.requires`),
    dir(`${UNIT_DIR}/sshd.service.requires`),
    dir("/etc/systemd/network"),
    file(networkBootstrap.scriptPath, networkBootstrap.script, 0o755),
    file(`${UNIT_DIR}/${networkBootstrap.unitName}`, networkBootstrap.unit),
    file(agent.scriptPath, agent.script, 0o755),
    file(`${UNIT_DIR}/${agent.unitName}`, agent.unit),
    file(sshdConfig.dropInPath, sshdConfig.dropIn),
    file(`${UNIT_DIR}/${sshdConfig.hostKeysUnitName}`, sshdConfig.hostKeysUnit),
    file("/etc/fstab", FSTAB),
    enable(networkBootstrap.unitName, "multi-user.target.wants"),
    enable(networkBootstrap.unitName, "network-online.target.wants"),
    enable(agent.unitName, "multi-user.target.wants"),
    enable(sshdConfig.hostKeysUnitName, "multi-user.target.wants"),
    enable(sshdConfig.hostKeysUnitName, "ssh.service.requires"),
    enable(sshdConfig.hostKeysUnitName, "sshd.service.requires"),
    ...MASKED_UNITS.map((unit) => link(`${UNIT_DIR}/${unit}`, "/dev/null")),
    link("/etc/systemd/network/99-default.link", "/dev/null"),
  ];
  if (options.firstBoot) {
    pieces.push(
      dir("/var/lib"),
      dir("/var/lib/banger"),
      file(firstBoot.scriptPath, firstBoot.script, 0o755),
      file(firstBoot.markerPath, ""),
    );
  }
  return pieces;
}

/**
 * Writes `pieces` under `rootDir` (a guest tree on the host), replacing files and
 * symlinks already there. Ownership is whoever runs this: root when building an image.
 *
 * @throws {Deno.errors.NotFound} when a parent directory is missing from both the tree
 *   and the list; other filesystem errors as thrown by Deno.
 */
export async function writeGuestPieces(
  rootDir: string,
  pieces: readonly GuestPiece[],
): Promise<void> {
  for (const piece of pieces) {
    const path = `${rootDir}${piece.path}`;
    if (piece.kind === "dir") {
      await Deno.mkdir(path, { recursive: true, mode: piece.mode });
      await Deno.chmod(path, piece.mode);
    } else if (piece.kind === "file") {
      await Deno.remove(path).catch(() => {});
      await Deno.writeTextFile(path, piece.content, { mode: piece.mode });
      await Deno.chmod(path, piece.mode);
    } else {
      await Deno.remove(path).catch(() => {});
      await Deno.symlink(piece.target, path);
    }
  }
}
