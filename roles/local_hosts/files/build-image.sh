#!/usr/bin/env bash
# Build a minimal Debian image for podman with mmdebstrap and import it.
#   build-image.sh IMAGE:TAG SUITE MIRROR INCLUDE_PACKAGES
# The result is a plain root file system: the packages asked for (python3, so that Ansible
# can manage it), an /etc/hosts (minbase ships none) and the apt lists (so that a role's
# "install what is missing" finds everything installed without an apt-get update). No
# registry is involved. mmdebstrap downloads in parallel and unpacks with one dpkg run:
# about 15 s for a minimal suite where debootstrap took about 45.
set -euo pipefail
image=$1 suite=$2 mirror=$3 include=$4
work=$(mktemp -d /var/tmp/r-lambda-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "build-image: mmdebstrap $suite from $mirror with $include" >&2
# The hook's $1 (the new root) is mmdebstrap's to expand, hence the single quotes.
# shellcheck disable=SC2016
mmdebstrap --mode=root --variant=minbase --include="$include" --format=tar \
  --skip=cleanup/apt/lists \
  --customize-hook='printf "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" >"$1/etc/hosts"' \
  "$suite" "$work/rootfs.tar" "$mirror" >"$work/mmdebstrap.log" 2>&1 ||
  { tail -n 20 "$work/mmdebstrap.log" >&2; exit 1; }

echo "build-image: importing $image" >&2
podman import --change 'CMD ["sleep", "infinity"]' --message "r-lambda $suite base" \
  "$work/rootfs.tar" "$image" >/dev/null
echo "build-image: done" >&2
