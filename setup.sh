#!/usr/bin/env bash
# Installs what banger needs on a Debian/Ubuntu host: Deno (from npm), the host tools, and
# a `banger` command on PATH that runs this checkout. With --dev, also what the tests use
# (a local OCI registry, skopeo/umoci, busybox, DNS and compression tools, fish, bsdtar
# and setcap for the tar conformance tests).
# Safe to run again. Run as root (or with sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")"
runtime=(
  ca-certificates git iproute2 nftables e2fsprogs openssh-client qemu-system-x86 debootstrap
)
# docker-registry listens on :5000 on every interface once installed: tests only.
dev=(
  busybox-static lz4 zstd xz-utils kmod cpio docker-registry skopeo umoci socat procps dnsutils
  xfsprogs iputils-ping fish libarchive-tools libcap2-bin
)
case "${1:-}" in
  "") packages=("${runtime[@]}") ;;
  --dev) packages=("${runtime[@]}" "${dev[@]}") ;;
  *) echo "usage: ./setup.sh [--dev]" >&2; exit 2 ;;
esac
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
if ! command -v deno >/dev/null || ! deno --version | grep -q '^deno 2\.9\.'; then
  command -v npm >/dev/null || apt-get install -y -qq --no-install-recommends npm >/dev/null
  npm install -g --silent deno@2.9.6
fi
# Root runs the all-in-one development mode; anyone else is a system install's owner.
src="$(pwd)"
cat > /usr/local/bin/banger <<SHIM
#!/bin/sh
# banger from the source checkout at $src (written by its setup.sh).
if [ "\$(id -u)" = 0 ]; then set=banger; else set=owner; fi
exec deno run -q --config="$src/deno.json" -P="\$set" "$src/main.ts" "\$@"
SHIM
chmod 0755 /usr/local/bin/banger
deno --version | head -n 1
