#!/usr/bin/env bash
# Derive an image from one of role local_hosts' base images: its root file system with more
# Debian packages installed (sshd and sudo for the sandbox's instances). About 10 s where a
# new mmdebstrap of the suite takes a minute or more: on a machine that has released, the
# base images are there already.
#   derive-image.sh IMAGE:TAG BASE_IMAGE PACKAGES(comma-separated) RUN_ID LABEL
set -euo pipefail
image=$1 base=$2 packages=$3 run_id=$4 label=$5
work=$(mktemp -d /var/tmp/r-lambda-derive.XXXXXX)
name=$(basename "$work" | tr '[:upper:].' '[:lower:]-')
# The container is labelled with the run: a reaper removes it should this script be killed.
trap 'podman rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

install="apt-get install -y -qq --no-install-recommends ${packages//,/ }"
echo "build-image: $image from $base with $packages" >&2
# The base keeps the apt lists of its build; should the mirror have moved on since (a
# package file gone), the lists are read again and the install tried once more. The
# downloaded package files are not kept in the image.
podman run --name "$name" --network host --label "$label=$run_id" \
  --env DEBIAN_FRONTEND=noninteractive "$base" \
  sh -c "{ $install || { apt-get update -qq && $install; }; } && apt-get clean" >"$work/install.log" 2>&1 ||
  { tail -n 20 "$work/install.log" >&2; exit 1; }
podman commit --quiet --change 'CMD ["sleep", "infinity"]' "$name" "$image" >/dev/null
echo "build-image: done" >&2
