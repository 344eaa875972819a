#!/usr/bin/env bash
# Prepare this machine (Debian 12, root) for a local release and the tests:
# apt packages, podman settings, the pinned virtualenv. Safe to run again: each
# step is skipped when it is already done.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

log() { printf '\033[1mbootstrap:\033[0m %s\n' "$*"; }

# catatonit: the init that `podman run --init` needs (only a recommendation of podman).
# iptables: the local S3 container's firewall (roles/local_s3; only a suggestion of podman).
apt_packages=(podman runc catatonit iptables debootstrap r-base-core r-base-dev python3-venv zip unzip make openssh-client)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: missing apt packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  log "installing apt packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# podman on this kind of host needs runc (crun fails under hybrid cgroups) and no
# default ulimits. A drop-in keeps the distribution's own containers.conf intact.
conf_dir=/etc/containers/containers.conf.d
if ! cmp -s podman/containers.conf "$conf_dir/50-r-lambda.conf" 2>/dev/null; then
  log "installing podman settings in $conf_dir/50-r-lambda.conf"
  install -D -m 0644 podman/containers.conf "$conf_dir/50-r-lambda.conf"
fi

stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements.lock | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "creating .venv from requirements.txt (a few minutes the first time)"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # rpy2 is compiled against the R found here (never a wheel built for another R).
  .venv/bin/pip install -q --no-binary rpy2,rpy2-rinterface -r requirements.txt -c requirements.lock
  echo "$want" >"$stamp"
fi
log "ready"
