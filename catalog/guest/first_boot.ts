/**
 * `banger-first-boot`: the `init=` for images that may not have systemd yet (OCI images
 * pulled from a registry). As PID 1 it mounts `/proc`, `/sys`, `/dev` and `/run`; when
 * systemd is installed it execs it at once. Otherwise it installs `systemd-sysv`, `udev`,
 * `openssh-server`, `iproute2` and `socat` (or the distro's names for them) with the
 * package manager picked from `/etc/os-release` (`ID`, then each `ID_LIKE`), removes the
 * pending marker and execs systemd. The network is already up at that point: the
 * initramfs configured it from `guest.env`. Installing needs NAT to reach a mirror.
 *
 * Package managers: apt (debian, ubuntu), dnf (fedora, rhel, centos, rocky, almalinux,
 * amzn), pacman (arch), zypper (opensuse, sles). Alpine is refused: it has no systemd.
 * While installing, a `policy-rc.d` that answers 101 keeps maintainer scripts from
 * starting services. A failure prints why on the console and exits, which panics the
 * kernel; with `panic=1 reboot=k` the VM stops and its serial log says what happened.
 *
 * Dry run: `RUN_PLAN=1` prints the plan (one step per line, commands prefixed `+ `)
 * instead of acting. Seams: `OS_RELEASE_FILE`, `BANGER_FIRST_BOOT_MARKER`, `BANGER_ROOT`
 * (prefix used to look for systemd).
 *
 * @module
 */

/** The first-boot script and its marker. */
export const firstBoot = {
  /** Where the script is installed; pass it as `init=` on the kernel command line. */
  scriptPath: "/usr/local/libexec/banger-first-boot",
  /** Present while the image still needs its first-boot install. */
  markerPath: "/var/lib/banger/first-boot-pending",
  /** The script (mode 0755). */
  script: `#!/bin/sh
# banger-first-boot: PID 1 for images that may lack systemd. Mounts the API filesystems,
# execs systemd when present, otherwise installs it (plus sshd, iproute2, socat) first.
# RUN_PLAN=1 prints the plan instead of acting.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
plan=\${RUN_PLAN:-}
os_release=\${OS_RELEASE_FILE:-/etc/os-release}
marker=\${BANGER_FIRST_BOOT_MARKER:-/var/lib/banger/first-boot-pending}
root=\${BANGER_ROOT:-}

say() { if [ -n "$plan" ]; then echo "$*"; else echo "banger-first-boot: $*" > /dev/console 2>&1 || echo "banger-first-boot: $*" >&2; fi; }
act() { if [ -n "$plan" ]; then echo "+ $*"; else "$@"; fi; }
fail() {
  say "fail: $*"
  if [ -z "$plan" ]; then sync; sleep 2; fi
  exit 1
}

mount_api() {
  if [ -z "$plan" ] && grep -qs " $2 " /proc/mounts; then return 0; fi
  say "mount $1 $2"
  act mkdir -p "$2"
  act mount -t "$1" "$1" "$2" || say "cannot mount $1 on $2"
}

find_systemd() {
  for candidate in /lib/systemd/systemd /usr/lib/systemd/systemd; do
    if [ -x "$root$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

os_ids() {
  [ -r "$os_release" ] || return 0
  id= like=
  while IFS='=' read -r key value || [ -n "$key" ]; do
    value=\${value#[\\"\\']}; value=\${value%[\\"\\']}
    case $key in ID) id=$value ;; ID_LIKE) like=$value ;; esac
  done < "$os_release"
  echo "$id $like"
}

pick_manager() {
  for id in $(os_ids); do
    case $id in
      debian | ubuntu) echo apt; return ;;
      fedora | rhel | centos | rocky | almalinux | amzn) echo dnf; return ;;
      arch | archlinux) echo pacman; return ;;
      opensuse* | suse | sles) echo zypper; return ;;
      alpine) echo apk; return ;;
    esac
  done
  echo unknown
}

install_packages() {
  case $1 in
    apt)
      say "install apt: systemd-sysv udev openssh-server iproute2 socat ca-certificates"
      act env DEBIAN_FRONTEND=noninteractive apt-get update || fail "apt-get update failed"
      act env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
        systemd-sysv udev openssh-server iproute2 socat ca-certificates || fail "apt-get install failed" ;;
    dnf)
      say "install dnf: systemd openssh-server iproute socat"
      act dnf install -y systemd openssh-server iproute socat || fail "dnf install failed" ;;
    pacman)
      say "install pacman: systemd openssh iproute2 socat"
      act pacman -Sy --noconfirm systemd openssh iproute2 socat || fail "pacman failed" ;;
    zypper)
      say "install zypper: systemd openssh-server iproute2 socat"
      act zypper --non-interactive install systemd openssh-server iproute2 socat || fail "zypper failed" ;;
    apk) fail "Alpine has no systemd; banger needs a systemd-based image" ;;
    *) fail "cannot tell this image's package manager from ID/ID_LIKE in $os_release" ;;
  esac
}

mount_api proc /proc
mount_api sysfs /sys
mount_api devtmpfs /dev
mount_api tmpfs /run

if systemd=$(find_systemd); then
  say "exec $systemd"
  [ -n "$plan" ] && exit 0
  exec "$systemd"
fi

manager=$(pick_manager)
say "systemd missing; package manager: $manager"
policy=/usr/sbin/policy-rc.d
if [ "$manager" = apt ]; then
  say "write $policy (exit 101) while installing"
  if [ -z "$plan" ]; then printf '#!/bin/sh\\nexit 101\\n' > "$policy" && chmod 755 "$policy"; fi
fi
install_packages "$manager"
if [ "$manager" = apt ]; then act rm -f "$policy"; fi
act rm -f "$marker"
act sync
systemd=$(find_systemd) || { [ -n "$plan" ] && systemd=/lib/systemd/systemd; } || fail "systemd is still missing after the install"
say "exec $systemd"
[ -n "$plan" ] && exit 0
exec "$systemd"
`,
} as const;
