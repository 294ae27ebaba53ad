#!/usr/bin/env bash
# System tools the test tiers use, from Debian's packages, installed only when missing:
#   kcat (a non-Python Kafka client, for the public-contract test). Prometheus/promtool: deploy/prometheus/install.sh.
set -euo pipefail
need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing system packages: ${need[*]} (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
