#!/usr/bin/env bash
# Start or stop a moto server on 127.0.0.1 for the sandbox platform, by hand.
#   eval "$(scripts/sandbox-moto.sh start)"   # starts one on a free port, prints the exports
#   ansible-playbook playbooks/release.yml -i inventory/sandbox
#   aws s3 ls                                 # the same shell reaches moto too
#   scripts/sandbox-moto.sh stop
# start writes the AWS profile r-lambda-sandbox (endpoint_url http://127.0.0.1:<port>,
# region, moto's keys) into config and credentials under $R_LAMBDA_SANDBOX_AWS_DIR (default
# .state/sandbox/aws, which inventory/sandbox reads by the same rule), and prints the
# exports that select it. stop leaves those files (the next start rewrites the profile).
# moto keeps everything in memory: stopping it forgets every instance, key pair and object.
# The tests (tests/sandbox) start and stop their own server; this one is for trying things.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.state/sandbox
aws_dir=$(realpath -m "${R_LAMBDA_SANDBOX_AWS_DIR:-$state/aws}")
profile=r-lambda-sandbox
region=us-east-1
bin=${VIRTUAL_ENV:-$PWD/.venv}/bin
mkdir -p "$state"

case ${1:-} in
  start)
    if [[ -f $state/moto.pid ]] && kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then
      port=$(cat "$state/moto.port")
    else
      port=${2:-$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
      # Validation as strict as AWS where moto offers it: unknown instance types, AMIs and
      # key pairs are refused.
      MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true MOTO_ENABLE_AMI_VALIDATION=true \
        MOTO_ENABLE_KEYPAIR_VALIDATION=true \
        setsid nohup "$bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 </dev/null &
      echo $! >"$state/moto.pid"
      echo "$port" >"$state/moto.port"
      for _ in $(seq 50); do
        "$bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" \
          2>/dev/null && break
        sleep 0.2
      done
    fi
    "$bin/python" scripts/aws_profile.py "$aws_dir" "$profile" "http://127.0.0.1:$port" "$region"
    # The profile alone: keys and an endpoint left in the shell would win over it.
    printf 'export AWS_CONFIG_FILE=%q AWS_SHARED_CREDENTIALS_FILE=%q AWS_PROFILE=%q\n' \
      "$aws_dir/config" "$aws_dir/credentials" "$profile"
    echo "unset AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN"
    ;;
  stop)
    if [[ -f $state/moto.pid ]]; then
      kill "$(cat "$state/moto.pid")" 2>/dev/null || true
      rm -f "$state/moto.pid" "$state/moto.port"
    fi
    ;;
  *)
    echo "usage: $0 start [port] | stop" >&2
    exit 2
    ;;
esac
