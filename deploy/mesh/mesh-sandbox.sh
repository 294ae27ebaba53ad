#!/usr/bin/env bash
# Local MESH API sandbox (NHS England's `mesh-sandbox`, a FastAPI app) for development and integration tests.
#
# The sandbox lives in its OWN virtual environment ($REPO/.cache/mesh-sandbox-venv): it pins fastapi and
# friends to versions the project does not use, so it must never be installed into the project's .venv.
#
# Usage: deploy/mesh/mesh-sandbox.sh {install|start|stop|status|clean}
#
# Environment:
#   MESH_PORT           port to listen on (default 8700); the run dir is $REPO/.run/mesh-$MESH_PORT
#   MESH_HOST           address to bind (default 127.0.0.1)
#   MESH_STORE_DIR      mailbox store directory (default $RUN_DIR/store)
#   MESH_START_TIMEOUT  seconds to wait for /health on start (default 60)
#   MESH_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 15)
#   MESH_VENV           sandbox virtualenv (default $REPO/.cache/mesh-sandbox-venv)
#   MESH_PYTHON         interpreter for the venv (default python3.11)
#
# The sandbox speaks plain http; clients use it with TLS verification off (MeshClient(..., verify=False)).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"

MESH_PORT="${MESH_PORT:-8700}"
MESH_HOST="${MESH_HOST:-127.0.0.1}"
MESH_VENV="${MESH_VENV:-$REPO/.cache/mesh-sandbox-venv}"
MESH_PYTHON="${MESH_PYTHON:-python3.11}"
MESH_START_TIMEOUT="${MESH_START_TIMEOUT:-60}"
MESH_STOP_TIMEOUT="${MESH_STOP_TIMEOUT:-15}"
RUN_DIR="$REPO/.run/mesh-$MESH_PORT"
MESH_STORE_DIR="${MESH_STORE_DIR:-$RUN_DIR/store}"
PID_FILE="$RUN_DIR/mesh.pid"
LOG_FILE="$RUN_DIR/mesh.log"
REQUIREMENTS="$SCRIPT_DIR/requirements.txt"
MARKER="$MESH_VENV/.installed"
MESH_URL="http://$MESH_HOST:$MESH_PORT"

log() { echo "mesh-sandbox: $*" >&2; }

find_uv() {
    if [[ -x "$REPO/.tools/bin/uv" ]]; then
        echo "$REPO/.tools/bin/uv" # installed by the Makefile
    elif command -v uv >/dev/null 2>&1; then
        echo "uv"
    elif "$MESH_PYTHON" -m uv --version >/dev/null 2>&1; then
        echo "$MESH_PYTHON -m uv"
    else
        echo ""
    fi
}

requirements_hash() {
    sha256sum "$REQUIREMENTS" | cut -d' ' -f1
}

cmd_install() {
    local want
    want="$(requirements_hash)"
    if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$want" && -x "$MESH_VENV/bin/uvicorn" ]]; then
        return 0
    fi
    log "installing sandbox into $MESH_VENV"
    mkdir -p "$(dirname "$MESH_VENV")"
    local uv_cmd
    uv_cmd="$(find_uv)"
    if [[ -n "$uv_cmd" ]]; then
        # shellcheck disable=SC2086
        $uv_cmd venv --quiet --allow-existing --python "$MESH_PYTHON" "$MESH_VENV"
        # shellcheck disable=SC2086
        $uv_cmd pip install --quiet --python "$MESH_VENV/bin/python" -r "$REQUIREMENTS"
    else
        "$MESH_PYTHON" -m venv "$MESH_VENV"
        "$MESH_VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS"
    fi
    echo "$want" >"$MARKER"
}

# Prints the PID and returns 0 when the recorded process is alive.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

healthy() {
    "$MESH_VENV/bin/python" - "$MESH_URL/health" <<'PY' >/dev/null 2>&1
import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=2) as response:  # noqa: S310 - local sandbox URL
    sys.exit(0 if response.status == 200 else 1)
PY
}

cmd_start() {
    cmd_install
    mkdir -p "$RUN_DIR" "$MESH_STORE_DIR"
    local pid
    if pid="$(running_pid)"; then
        if healthy; then
            log "already running (pid $pid)"
            echo "MESH_URL=$MESH_URL"
            return 0
        fi
    else
        rm -f "$PID_FILE"
    fi
    if [[ -z "${pid:-}" ]]; then
        log "starting on $MESH_URL (store $MESH_STORE_DIR, log $LOG_FILE)"
        # setsid (when available): own session, so a Ctrl-C in the caller's terminal does not reach it.
        # The sandbox emits dozens of FastAPI deprecation warnings at import; keep them out of the log.
        local detach=()
        command -v setsid >/dev/null 2>&1 && detach=(setsid)
        STORE_MODE=file MAILBOXES_DATA_DIR="$MESH_STORE_DIR" PYTHONWARNINGS="ignore" \
            "${detach[@]}" "$MESH_VENV/bin/uvicorn" mesh_sandbox.api:app \
            --host "$MESH_HOST" --port "$MESH_PORT" --log-level warning \
            </dev/null >>"$LOG_FILE" 2>&1 &
        pid=$!
        echo "$pid" >"$PID_FILE"
    fi
    local deadline=$((SECONDS + MESH_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited during start-up; last log lines:"
            tail -n 40 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            return 1
        fi
        if healthy; then
            echo "MESH_URL=$MESH_URL"
            return 0
        fi
        sleep 0.2
    done
    log "no answer on $MESH_URL/health within ${MESH_START_TIMEOUT}s; last log lines:"
    tail -n 40 "$LOG_FILE" >&2 || true
    cmd_stop || true
    return 1
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + MESH_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for ${MESH_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        if healthy; then
            echo "running pid=$pid MESH_URL=$MESH_URL healthy"
        else
            echo "running pid=$pid MESH_URL=$MESH_URL not answering /health"
        fi
        return 0
    fi
    echo "stopped"
    return 3
}

cmd_clean() {
    cmd_stop
    rm -rf "$RUN_DIR"
    log "removed $RUN_DIR"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    clean) cmd_clean ;;
    *)
        echo "usage: $0 {install|start|stop|status|clean}" >&2
        exit 2
        ;;
esac
