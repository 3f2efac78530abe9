/**
 * `banger-network-bootstrap` and `banger-network.service`: the guest configures its own
 * network from `/root/.banger/guest.env` (see `guest_env.ts`) — address, link, default
 * route, `/etc/resolv.conf`, hostname and `/etc/hosts`. The kernel's `ip=` is not used
 * (Debian's cloud kernel has no `CONFIG_IP_PNP`).
 *
 * The script runs twice per boot, and every step is idempotent:
 * 1. from the initramfs under busybox, with `BANGER_ROOT=/newroot` and the work disk
 *    mounted read-only, so the network is up before the image's init runs (this is what
 *    lets the first-boot installer reach a package mirror in images without iproute2);
 * 2. from `banger-network.service` (after `/root` is mounted, before sshd), so a
 *    systemd image ends up configured even if something reset the interface.
 *
 * It is POSIX sh that works under dash and busybox ash, and parses `guest.env` line by
 * line without sourcing it. The interface is `eth0`, or the first non-loopback one.
 *
 * Test seams (environment): `BANGER_ROOT` prefixes every file written; `BANGER_GUEST_ENV`
 * overrides the env file; `BANGER_SYSFS` replaces `/sys`; `BANGER_DRY_RUN=1` prints the
 * `ip`/`hostname` commands (`+ ip ...`) instead of running them.
 *
 * @module
 */

/** The network bootstrap script and its systemd unit. */
export const networkBootstrap = {
  /** Where the script is installed in the guest. */
  scriptPath: "/usr/local/libexec/banger-network-bootstrap",
  /** The unit's file name under `/etc/systemd/system/`. */
  unitName: "banger-network.service",
  /** The script (mode 0755). */
  script: `#!/bin/sh
# banger-network-bootstrap: configure the guest network, DNS and hostname from guest.env,
# which banger writes onto the work disk (/root) before every start. Idempotent.
set -eu
root=\${BANGER_ROOT:-}
env_file=\${BANGER_GUEST_ENV:-$root/root/.banger/guest.env}
sysfs=\${BANGER_SYSFS:-/sys}

say() { echo "banger-network: $*" >&2; }
die() { say "$*"; exit 1; }
run() { if [ -n "\${BANGER_DRY_RUN:-}" ]; then echo "+ $*"; else "$@"; fi; }

is_ipv4() {
  case $1 in '' | *[!0-9.]*) return 1 ;; esac
  saved_ifs=$IFS; IFS=.; set -- $1; IFS=$saved_ifs
  [ $# -eq 4 ] || return 1
  for octet in "$@"; do
    [ -n "$octet" ] && [ \${#octet} -le 3 ] && [ "$octet" -le 255 ] || return 1
  done
}

write_file() {
  tmp="$1.banger-tmp"
  printf '%s' "$2" > "$tmp"
  mv -f "$tmp" "$1"
}

[ -r "$env_file" ] || die "cannot read $env_file: banger writes it before each start"
guest_ip= gateway= dns= host=
while IFS= read -r line || [ -n "$line" ]; do
  case $line in '' | '#'*) continue ;; *=*) ;; *) die "cannot parse line: $line" ;; esac
  key=\${line%%=*}
  value=\${line#*=}
  case $key in
    BANGER_GUEST_IP) guest_ip=$value ;;
    BANGER_GATEWAY) gateway=$value ;;
    BANGER_DNS) dns=$value ;;
    BANGER_HOSTNAME) host=$value ;;
    BANGER_VM_NAME | BANGER_VM_ID) ;;
    *) say "ignoring unknown key $key" ;;
  esac
done < "$env_file"

address=\${guest_ip%/*}
prefix=\${guest_ip#*/}
case $guest_ip in */*) ;; *) die "BANGER_GUEST_IP=$guest_ip: expected a.b.c.d/prefix" ;; esac
case $prefix in '' | *[!0-9]*) die "BANGER_GUEST_IP=$guest_ip: bad prefix" ;; esac
is_ipv4 "$address" && [ "$prefix" -le 32 ] || die "BANGER_GUEST_IP=$guest_ip: expected a.b.c.d/prefix"
if [ -n "$gateway" ] && ! is_ipv4 "$gateway"; then die "BANGER_GATEWAY=$gateway: not an IPv4 address"; fi
case $host in
  *[!a-z0-9-]* | -* | *-) die "BANGER_HOSTNAME=$host: not a DNS label" ;;
esac
[ \${#host} -le 63 ] || die "BANGER_HOSTNAME=$host: longer than 63 characters"
nameservers=
old_ifs=$IFS; IFS=', '; set -f
for server in $dns; do
  is_ipv4 "$server" || die "BANGER_DNS=$dns: $server is not an IPv4 address"
  nameservers="$nameservers $server"
done
IFS=$old_ifs; set +f

iface=
if [ -e "$sysfs/class/net/eth0" ]; then
  iface=eth0
else
  for dev in "$sysfs"/class/net/*; do
    name=\${dev##*/}
    if [ "$name" != lo ] && [ -e "$dev" ]; then iface=$name; break; fi
  done
fi
[ -n "$iface" ] || die "no network interface found in $sysfs/class/net"

run ip link set lo up
if [ -z "\${BANGER_DRY_RUN:-}" ] && ip -o addr show dev "$iface" | grep -q " inet $guest_ip "; then
  say "$iface already has $guest_ip"
else
  run ip addr flush dev "$iface"
  run ip addr add "$guest_ip" dev "$iface"
fi
run ip link set "$iface" up
if [ -n "$gateway" ]; then run ip route replace default via "$gateway" dev "$iface"; fi

if [ -n "$nameservers" ]; then
  conf="# written by banger-network-bootstrap from guest.env
"
  for server in $nameservers; do conf="\${conf}nameserver $server
"; done
  write_file "$root/etc/resolv.conf" "$conf"
fi
if [ -n "$host" ]; then
  write_file "$root/etc/hostname" "$host
"
  write_file "$root/etc/hosts" "127.0.0.1 localhost
127.0.1.1 $host
::1 localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
"
  run hostname "$host"
fi
say "configured $iface as $guest_ip"
`,
  /** The unit (mode 0644), enabled in `multi-user.target` and `network-online.target`. */
  unit: `[Unit]
Description=banger: network, DNS and hostname from /root/.banger/guest.env
After=local-fs.target root.mount
Before=network.target network-online.target ssh.service sshd.service banger-agent.service
Wants=network.target
ConditionPathExists=/root/.banger/guest.env

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/libexec/banger-network-bootstrap

[Install]
WantedBy=multi-user.target network-online.target
`,
} as const;
