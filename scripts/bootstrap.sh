#!/usr/bin/env bash
# Prepare this machine (Debian 12, root) for a local release and the tests:
# apt packages, podman settings, the pinned virtualenv. Safe to run again: each
# step is skipped when it is already done.
#
# The virtualenv lives in the machine-wide cache (R_LAMBDA_CACHE_DIR, else
# $XDG_CACHE_HOME/r-lambda, else ~/.cache/r-lambda: the rule of the lookup
# r_lambda.release.cache_dir), named after a digest of what it is made from, and .venv
# links to it: a second checkout of the same requirements on this machine starts at once.
# The project's own Python tools (src/, declared in pyproject.toml) are installed in it as a
# wheel built from this checkout's sources, so those sources are part of the digest: a
# checkout whose src/ differs gets a virtualenv of its own (about 20 s, uv links the
# distributions from its cache) and never changes another checkout's.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

log() { printf '\033[1mbootstrap:\033[0m %s\n' "$*"; }

# catatonit: the init that `podman run --init` needs (only a recommendation of podman).
# iptables: the local S3 container's firewall (roles/local_s3; only a suggestion of podman).
# mmdebstrap: the hosts' base images (roles/local_hosts).
# r-cran-*: the model kinds the handler tests fit and serve besides glm and lm
# (tests/handler/test_model_kinds.py; r-base-core alone has no recommended package).
apt_packages=(podman runc catatonit iptables mmdebstrap r-base-core r-base-dev python3-venv zip unzip make openssh-client
  r-cran-randomforest r-cran-ranger r-cran-mgcv r-cran-rpart r-cran-nnet)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})) && [[ $(id -u) -ne 0 ]]; then
  echo "bootstrap: missing apt packages (${missing[*]}); run as root or install them" >&2
  exit 1
fi
# pip as configured on this machine also warns about every index folder it lacks: noise.
pip_() { "$venv/bin/pip" "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }
# The entries of requirements.lock (each a pin and its hashes) whose line matches $1 and
# not $2.
lock_entries() {
  awk -v want="$1" -v skip="${2:-^$}" '/^[^ #]/ {keep = ($0 ~ want && $0 !~ skip)} keep && !/^ *#/' requirements.lock
}
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

cache=${R_LAMBDA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/r-lambda}
# The distribution's own Python 3 runs the virtualenv when there is one: Debian builds it
# with profile-guided and link-time optimisation, and every Ansible module is a new Python
# process (about a quarter less CPU per module than under pyenv's plain build, measured).
python=/usr/bin/python3
[[ -x $python ]] || python=$(command -v python3)
# What the virtualenv is made from: the pins, the Python that runs it, the R that rpy2
# is compiled against (r-base-core's version, known before it is installed) and the
# project's package (pyproject.toml and every file under src/ but bytecode).
r_version=$(apt-cache policy r-base-core 2>/dev/null | awk '/Installed:/ && $2 != "(none)" {print $2; exit} /Candidate:/ {c=$2} END {if (c) print c}' | head -n 1)
package_sources() {
  find src -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  sha256sum pyproject.toml
}
want=$( { cat requirements.txt requirements.lock; echo "$python"; "$python" -VV; echo "r-base-core $r_version"; package_sources; } | sha256sum | cut -c1-16)
venv=$cache/venvs/$want

apt_pid=""
if ((${#missing[@]})); then
  log "installing apt packages: ${missing[*]}"
  apt-get update -qq
  # The virtualenv needs python3-venv first; everything else installs while pip works.
  if [[ " ${missing[*]} " == *" python3-venv "* ]]; then apt_install python3-venv; fi
  apt_install "${missing[@]}" &
  apt_pid=$!
fi

# podman on this kind of host needs runc (crun fails under hybrid cgroups) and no
# default ulimits. A drop-in keeps the distribution's own containers.conf intact.
conf_dir=/etc/containers/containers.conf.d
if ! cmp -s podman/containers.conf "$conf_dir/50-r-lambda.conf" 2>/dev/null; then
  log "installing podman settings in $conf_dir/50-r-lambda.conf"
  install -D -m 0644 podman/containers.conf "$conf_dir/50-r-lambda.conf"
fi

mkdir -p "$cache/venvs"
exec 9>"$cache/venvs/.lock"
flock 9  # one bootstrap at a time makes a given virtualenv; the others then find it
if [[ ! -e $venv/.complete ]]; then
  log "creating the virtualenv $venv from requirements.txt and src/ (about 20 s)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # Every distribution is checked against the sha256 requirements.lock holds
  # (--require-hashes): first pip and uv themselves (pip upgrades the venv's bundled pip),
  # then uv installs the rest: parallel downloads and its own machine-wide cache, about 5 s
  # where pip took 45 even with its cache warm.
  pip_ install -q --require-hashes --no-deps -r <(lock_entries '^(pip|uv)==')
  uv_() { "$venv/bin/uv" pip install -q --python "$venv/bin/python" --require-hashes "$@"; }
  # Everything but rpy2 while apt works; rpy2 is compiled against the R installed here
  # (never a wheel built for another R), so it waits for r-base-dev. It builds with the
  # pinned setuptools, wheel and cffi already installed, not in an isolated environment
  # whose downloads no hash would check.
  uv_ -r <(lock_entries '^' '^rpy2==')
  if [[ -n $apt_pid ]]; then wait "$apt_pid"; apt_pid=""; fi
  uv_ --no-deps --no-build-isolation --no-binary rpy2 -r <(lock_entries '^rpy2==')
  # The project's package: a wheel built offline from a copy of src/ and pyproject.toml
  # (setuptools writes build/ and *.egg-info beside the sources it builds) with the pinned
  # setuptools, installed (not editable) by the sha256 of the wheel just built.
  build=$(mktemp -d)
  tar -c --exclude=__pycache__ --exclude='*.pyc' pyproject.toml src | tar -x -C "$build"
  "$venv/bin/uv" build -q --wheel --no-build-isolation --offline --no-index \
    --python "$venv/bin/python" -o "$build/dist" "$build"
  wheel=$(echo "$build"/dist/*.whl)
  uv_ --no-deps --offline -r <(echo "r-lambda-release @ file://$wheel --hash=sha256:$(sha256sum "$wheel" | cut -d' ' -f1)")
  rm -rf "$build"
  touch "$venv/.complete"
fi
flock -u 9
if [[ -n $apt_pid ]]; then wait "$apt_pid"; fi
if [[ "$(readlink .venv 2>/dev/null)" != "$venv" ]]; then
  [[ -L .venv || ! -e .venv ]] || { log "replacing the checkout's own .venv folder by the shared one"; rm -rf .venv; }
  ln -sfn "$venv" .venv
fi
log "ready"
