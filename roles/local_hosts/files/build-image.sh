#!/usr/bin/env bash
# Build a minimal Debian image for podman with debootstrap and import it.
#   build-image.sh IMAGE:TAG SUITE MIRROR INCLUDE_PACKAGES
# The result is a plain root file system: python3 (so Ansible can manage it), an
# /etc/hosts (minbase ships none), and nothing else. No registry is involved.
set -euo pipefail
image=$1 suite=$2 mirror=$3 include=$4
work=$(mktemp -d /var/tmp/r-lambda-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "build-image: debootstrap $suite from $mirror (about a minute)" >&2
debootstrap --variant=minbase --include="$include" "$suite" "$work/rootfs" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$work/rootfs/etc/hosts"
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*

echo "build-image: importing $image" >&2
tar -C "$work/rootfs" --numeric-owner -c . |
  podman import --change 'CMD ["sleep", "infinity"]' --message "r-lambda $suite base" - "$image" >/dev/null
echo "build-image: done" >&2
