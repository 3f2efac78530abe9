#!/usr/bin/env bash
# Installs what banger needs on a Debian/Ubuntu host: Deno (from npm) and the host tools.
# Safe to run again. Run as root (or with sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  ca-certificates git iproute2 nftables e2fsprogs openssh-client
  qemu-system-x86 busybox-static lz4 zstd xz-utils kmod debootstrap cpio
  docker-registry skopeo umoci socat procps dnsutils xfsprogs iputils-ping
)
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
if ! command -v deno >/dev/null || ! deno --version | grep -q '^deno 2\.9\.'; then
  command -v npm >/dev/null || apt-get install -y -qq --no-install-recommends npm >/dev/null
  npm install -g --silent deno@2.9.6
fi
deno --version | head -n 1
