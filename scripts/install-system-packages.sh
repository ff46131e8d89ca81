#!/usr/bin/env bash
# Installs the Debian packages that tests start as real processes (redis-server,
# prometheus with promtool) when they are missing. Needs root (CI and dev machines run as root).
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-packages: missing ${need[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the daemons after install; tests start their own on free ports.
for svc in redis-server prometheus; do
  (service "$svc" stop || systemctl stop "$svc") >/dev/null 2>&1 || true
done
