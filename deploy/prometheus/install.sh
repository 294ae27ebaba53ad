#!/usr/bin/env bash
# Make `prometheus` and `promtool` available (Debian 12's `prometheus` package, 2.42.x).
#
#   bash deploy/prometheus/install.sh
#
# Idempotent and quiet: does nothing when both binaries are already on PATH. Otherwise it runs
# `apt-get update` and `apt-get install --no-install-recommends prometheus` (needs root, as in CI).
# The package's own service is never started: while apt runs, a policy-rc.d that denies service
# starts is in place (the one already there, as in Debian container images, or a temporary one
# removed afterwards). deploy/prometheus/prometheus.sh runs the binary itself, with its own config,
# storage and port.
#
# On success prints nothing on stdout; messages go to stderr.
set -euo pipefail

log() { printf 'prometheus/install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

have_both() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

if have_both; then
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "prometheus/promtool missing and apt-get not available; install Prometheus >= 2.42 so both are on PATH"
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    die "prometheus/promtool missing; run as root (or with passwordless sudo) to apt-get install prometheus"
  fi
else
  SUDO=()
fi

POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
  if ((created_policy)); then
    "${SUDO[@]}" rm -f -- "$POLICY"
  fi
}
trap cleanup EXIT

if [[ ! -e $POLICY ]]; then
  # Deny service starts during this install only (exit 101 = "action forbidden by policy").
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee -- "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 0755 -- "$POLICY"
  created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
log "installing Debian package 'prometheus' (apt-get) ..."
log_file=$(mktemp)
trap 'cleanup; rm -f -- "$log_file"' EXIT
# A concurrent apt run holds the lock: wait for it (bounded) rather than fail.
apt_opts=(-qq -o DPkg::Lock::Timeout=120)
if ! "${SUDO[@]}" apt-get "${apt_opts[@]}" update >"$log_file" 2>&1; then
  cat "$log_file" >&2
  die "apt-get update failed"
fi
if ! "${SUDO[@]}" apt-get "${apt_opts[@]}" install -y --no-install-recommends prometheus \
  >>"$log_file" 2>&1; then
  cat "$log_file" >&2
  die "apt-get install prometheus failed"
fi

have_both || die "installed the package but prometheus/promtool are still not on PATH"
log "installed: $(prometheus --version 2>&1 | head -n 1)"
