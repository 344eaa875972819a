#!/usr/bin/env bash
# Run the Molecule scenarios one after the other, in an order that satisfies their
# dependencies, and print how long each took:
#   scripts/molecule-all.sh                 every scenario under molecule/
#   scripts/molecule-all.sh r_runtime ...   only these, in the order given
#   scripts/molecule-all.sh --except a b    every scenario but these (make test runs the
#                                           ones with an S3 in one stream, the rest in the other)
# First makes sure the podman scenarios' base images exist under their stable aliases
# (localhost/r-lambda-base:bookworm, :bullseye, :trixie). lambda_package leaves .state/molecule/admission.zip
# for package_test, so it runs first (alongside the others when all run); package_test is
# skipped when it failed in this run.
# Exit status: 0 when every scenario passed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"

# Dependency order: cheap controller-side scenarios first, then build before test.
ordered=(local_s3 local_hosts artifact_store deploy r_runtime lambda_package package_test local_function)

excluded=()
if [[ ${1:-} == --except ]]; then
  shift
  excluded=("$@")
  set --
fi
for name in "$@" "${excluded[@]}"; do
  [[ -f "molecule/$name/molecule.yml" ]] || { echo "molecule-all: no scenario molecule/$name" >&2; exit 2; }
done

if (($#)); then
  scenarios=("$@")
else
  all=("${ordered[@]}")
  # Scenarios not named above run last, in name order, so that none is left out.
  for file in molecule/*/molecule.yml; do
    name=$(basename "$(dirname "$file")")
    [[ " ${ordered[*]} " == *" $name "* ]] || all+=("$name")
  done
  scenarios=()
  for name in "${all[@]}"; do
    [[ " ${excluded[*]} " == *" $name "* ]] || scenarios+=("$name")
  done
fi

log() { printf 'molecule-all: %s\n' "$*"; }

log "making sure the base images localhost/r-lambda-base:{bookworm,bullseye,trixie} exist"
ansible-playbook molecule/base-image.yml

# package_test must test the zips this run builds, never ones an earlier run left.
if [[ " ${scenarios[*]} " == *" lambda_package "* ]]; then
  rm -rf .state/molecule/admission.zip .state/molecule/layer-split
fi

# lambda_package, the longest scenario, shares nothing with the others but package_test
# (no S3, its own container): with every scenario to run it runs alongside them, and
# package_test after it. MOLECULE_SERIAL=1 runs all one after the other.
background=""
if [[ -z ${MOLECULE_SERIAL:-} && " ${scenarios[*]} " == *" lambda_package "* \
      && " ${scenarios[*]} " == *" package_test "* ]]; then
  background=lambda_package
  rest=()
  for name in "${scenarios[@]}"; do
    [[ $name == lambda_package || $name == package_test ]] || rest+=("$name")
  done
  scenarios=(lambda_package "${rest[@]}" package_test)
fi
mkdir -p dist/test-logs

declare -A result=()
passed=() failed=() skipped=()
total_start=$SECONDS
finish_background() {  # wait for the background scenario, show its output, record it
  local status=0
  wait "$background_pid" || status=$?
  cat "dist/test-logs/molecule-$background.log"
  result[$background]=$([[ $status -eq 0 ]] && echo passed || echo failed)
  if [[ $status -eq 0 ]]; then passed+=("$background"); else failed+=("$background"); fi
  log "$(printf '%-16s %-7s %4d s (alongside the others, which took %d s)' \
    "$background" "${result[$background]}" "$(cat "dist/test-logs/molecule-$background.seconds")" \
    $((SECONDS - background_start)))"
  background=""
}

for name in "${scenarios[@]}"; do
  if [[ $name == "$background" && -z ${background_pid:-} ]]; then
    log "molecule test -s $name (alongside the next ones; output in dist/test-logs/molecule-$name.log)"
    background_start=$SECONDS
    (
      start=$SECONDS
      status=0
      molecule test -s "$name" >"dist/test-logs/molecule-$name.log" 2>&1 || status=$?
      echo $((SECONDS - start)) >"dist/test-logs/molecule-$name.seconds"
      exit "$status"
    ) &
    background_pid=$!
    continue
  fi
  if [[ $name == package_test && -n $background ]]; then
    finish_background
  fi
  if [[ $name == package_test && ${result[lambda_package]:-} == failed ]]; then
    result[$name]=skipped
    skipped+=("$name")
    log "$(printf '%-16s skipped (lambda_package failed, so there is no package to test)' "$name")"
    continue
  fi
  log "molecule test -s $name (output also in dist/test-logs/molecule-$name.log)"
  start=$SECONDS
  if molecule test -s "$name" 2>&1 | tee "dist/test-logs/molecule-$name.log"; then
    result[$name]=passed
    passed+=("$name")
  else
    result[$name]=failed
    failed+=("$name")
  fi
  log "$(printf '%-16s %-7s %4d s' "$name" "${result[$name]}" $((SECONDS - start)))"
done

[[ -n $background ]] && finish_background
# The scenarios' own S3 (.state/molecule/seaweedfs, R_LAMBDA_MOLECULE_S3_PORT) is theirs
# alone: stopped once they are done, its data kept; only by a run of scenarios that use it
# (their molecule.yml names R_LAMBDA_MOLECULE_S3_PORT). `make test` runs the others in the
# other stream at the same time, which must not stop it under the S3 scenarios.
uses_s3=false
for name in "${scenarios[@]}"; do
  grep -q R_LAMBDA_MOLECULE_S3_PORT "molecule/$name/molecule.yml" && uses_s3=true
done
if [[ $uses_s3 == true && -d .state/molecule/seaweedfs ]]; then
  R_LAMBDA_LOCAL_S3_PORT=${R_LAMBDA_MOLECULE_S3_PORT:-8334} ansible-playbook playbooks/local_s3.yml \
    -e local_s3_state=absent -e local_s3_state_dir="$PWD/.state/molecule/seaweedfs" >/dev/null \
    || log "could not stop the scenarios' S3 (.state/molecule/seaweedfs)"
fi
summary="${#scenarios[@]} scenarios in $((SECONDS - total_start)) s: ${#passed[@]} passed"
((${#failed[@]})) && summary+=", ${#failed[@]} failed (${failed[*]})"
((${#skipped[@]})) && summary+=", ${#skipped[@]} skipped (${skipped[*]})"
log "$summary"
# Why each failed scenario failed, last, where a CI log's tail shows it: the lines of its
# log that report a failure (the recap above does not name the failed action).
for name in "${failed[@]}"; do
  log "why $name failed (from dist/test-logs/molecule-$name.log):"
  sed 's/\x1b\[[0-9;]*m//g' "dist/test-logs/molecule-$name.log" \
    | grep -E 'fatal:|FAILED!|ERROR|CRITICAL|Idempotence test failed|^ *\* |failed=[1-9]|"msg"' \
    | grep -v 'glob failed' | tail -n 12 | cut -c1-300 | sed 's/^/molecule-all:   /' || true
done
((${#failed[@]} + ${#skipped[@]} == 0))
