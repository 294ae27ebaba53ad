#!/usr/bin/env bash
# System tools the test tiers use, from Debian's packages, installed only when missing (idempotent):
#   kcat (a non-Python Kafka client, for the public-contract test);
#   chromium + chromium-driver (headless browser for tests/browser, the DQ report page).
# Prometheus/promtool: deploy/prometheus/install.sh. `apt-get update` runs only when a package is missing and
# apt does not know it yet.
set -euo pipefail
need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing system packages: ${need[*]} (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
known=1
for pkg in "${need[@]}"; do
    apt-cache show "$pkg" >/dev/null 2>&1 || known=0
done
[ "$known" -eq 1 ] || $SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
