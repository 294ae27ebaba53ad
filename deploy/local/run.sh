#!/usr/bin/env bash
# `make run`: the main job end to end on this machine, then stop everything this run started (also on failure
# or Ctrl-C):
#   1. NHS England's MESH sandbox (deploy/mesh/mesh-sandbox.sh) as the submission peer,
#   2. Kafka and the four services (up.sh) with the submission service sending over MESH,
#   3. the demo (`cld demo`): a synthetic LA dataset through ingest -> validated -> pseudonymised, the DQ
#      summary, a submission requested and approved by the LA's operator, sent over MESH, downloaded and
#      acknowledged in NHS England's sandbox mailbox, and the receipt.
# Env: MESH_PORT (8700), and everything up.sh reads. Set CLD_SUBMISSION_TRANSPORT=file to skip MESH.
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
RUN="$REPO/.run/local"
log() { printf 'run.sh: %s\n' "$*" >&2; }
mkdir -p "$RUN"

started_mesh=0
cleanup() {
  bash "$REPO/deploy/local/down.sh" || true
  if ((started_mesh)); then bash "$REPO/deploy/mesh/mesh-sandbox.sh" stop || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

demo_args=()
# A clean, repeatable run: its own topic prefix and submission state (`make up` alone keeps state between runs).
export CLD_TOPIC_PREFIX=${CLD_TOPIC_PREFIX:-run-$(date -u +%Y%m%dT%H%M%S).}
export CLD_SUBMISSION_STATE_DIR=${CLD_SUBMISSION_STATE_DIR:-$RUN/state/${CLD_TOPIC_PREFIX%.}}
log "this run's topics: ${CLD_TOPIC_PREFIX}cld.*; submission state: $CLD_SUBMISSION_STATE_DIR"
export CLD_SUBMISSION_TRANSPORT=${CLD_SUBMISSION_TRANSPORT:-mesh}
if [[ $CLD_SUBMISSION_TRANSPORT == mesh && -z ${CLD_MESH_URL:-} ]]; then
  export MESH_PORT=${MESH_PORT:-8700}
  bash "$REPO/deploy/mesh/mesh-sandbox.sh" status >/dev/null 2>&1 || started_mesh=1
  line=$(bash "$REPO/deploy/mesh/mesh-sandbox.sh" start | tail -n 1)
  export "${line?}"  # MESH_URL=http://127.0.0.1:<port>
  # The sandbox's canned mailboxes and published test credentials: the LA sends from X26ABC1 to
  # "NHS England" at X26ABC2 on TEST_WORKFLOW. A real deployment sets its own CLD_MESH_* (docs/submission.md).
  export CLD_MESH_URL=$MESH_URL CLD_MESH_MAILBOX=X26ABC1 CLD_MESH_PASSWORD=password CLD_MESH_SHARED_KEY=Banana
  export CLD_MESH_RECIPIENT_MAILBOX=X26ABC2 CLD_MESH_WORKFLOW_ID=TEST_WORKFLOW CLD_MESH_VERIFY_TLS=false
  export CLD_SUBMISSION_ACK_POLL_SECONDS=${CLD_SUBMISSION_ACK_POLL_SECONDS:-2}
  demo_args+=(--nhse-mesh-url "$MESH_URL")
  log "MESH sandbox at $MESH_URL (LA mailbox X26ABC1 -> NHS England mailbox X26ABC2)"
fi

rc=0
bash "$REPO/deploy/local/up.sh" || rc=$?
if ((rc != 0 && rc != 3)); then
  exit "$rc"
fi
# The demo authenticates with the keys up.sh issued (none in open mode): the example LA system's source key
# for the upload, and the LA operator's key for the submission.
if [[ ${CLD_TENANCY_MODE:-required} != open ]]; then
  export CLD_SOURCE_KEYS_FILE=${CLD_SOURCE_KEYS_FILE:-$RUN/source-keys.json}
  export CLD_OPERATOR_KEYS_FILE=${CLD_OPERATOR_KEYS_FILE:-$RUN/operator-keys.json}
fi
((rc == 3)) && demo_args+=(--no-submission)
"$REPO/.venv/bin/python" -m cld_cli.cmd_demo "${demo_args[@]}" "$@"
