#!/usr/bin/env bash
# `make e2e`: build (or find cached) the control-plane binaries, then run the e2e tests inside a
# network namespace created for this run, with only its loopback up: every component binds
# 127.0.0.1 there and nothing can reach outside. The namespace is deleted on exit, also on
# failure; the test session stops the processes it started, by pid.
#
#   e2e/run.sh [pytest args...]      e.g. e2e/run.sh -k kind
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then echo "e2e: needs ${need[*]} (run as root to install)" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "e2e: creating a network namespace needs root" >&2
  exit 1
fi

start=$SECONDS
bin="$(e2e/build.sh | tail -1)"
echo "e2e: binaries in $bin ($((SECONDS - start)) s)"

netns="gpu-platform-e2e-$$"
ip netns add "$netns"
cleanup() {
  # Whatever still runs in the namespace was started by this run (a test session killed hard
  # leaves its control plane behind): stop it by pid, then delete the namespace.
  local pids
  pids="$(ip netns pids "$netns" 2>/dev/null || true)"
  if [[ -n "$pids" ]]; then kill $pids 2>/dev/null || true; sleep 2; kill -9 $pids 2>/dev/null || true; fi
  ip netns delete "$netns" 2>/dev/null || true
}
trap cleanup EXIT
ip -n "$netns" link set lo up

ip netns exec "$netns" env E2E_BIN="$bin" .venv/bin/python -m pytest -p no:cacheprovider e2e/tests "$@"
