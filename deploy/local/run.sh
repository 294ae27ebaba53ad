#!/usr/bin/env bash
# `make run`: start Kafka and the four services (up.sh), run the end-to-end demo (`cld demo`), and stop
# everything this run started (down.sh), also on failure or Ctrl-C.
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
cleanup() { bash "$REPO/deploy/local/down.sh" || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

rc=0
bash "$REPO/deploy/local/up.sh" || rc=$?
if ((rc != 0 && rc != 3)); then
  exit "$rc"
fi
demo_args=()
# The demo authenticates with the key up.sh issued to the example LA system (none in open mode).
[[ ${CLD_TENANCY_MODE:-required} == open ]] || export CLD_SOURCE_KEYS_FILE=${CLD_SOURCE_KEYS_FILE:-$REPO/.run/local/source-keys.json}
((rc == 3)) && demo_args+=(--no-submission)
"$REPO/.venv/bin/python" -m cld_cli.cmd_demo "${demo_args[@]}" "$@"
